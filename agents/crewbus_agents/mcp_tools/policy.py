"""Whether an MCP tool's calls wait for a human, from its annotations and the settings.

MCP's annotations are hints from the server (the spec says not to trust them blindly),
so the default leans safe. With `approval = "auto"`, a call needs approval unless the tool
says it only reads (`readOnlyHint: true`) or says it writes without destroying
(`readOnlyHint: false` with `destructiveHint: false`). Missing annotations, a missing
`readOnlyHint`, and `destructiveHint: true` all mean approval. `always` and `never`
override the annotations for the whole server; `trusted_tools` exempts single tools.
"""

from __future__ import annotations

from mcp_types import ToolAnnotations

from crewbus_agents.mcp_tools.config import McpServerConfig


def needs_approval(config: McpServerConfig, tool: str, hints: ToolAnnotations | None) -> bool:
    if tool in config.trusted_tools or config.approval == "never":
        return False
    if config.approval == "always":
        return True
    return annotations_need_approval(hints)


def annotations_need_approval(hints: ToolAnnotations | None) -> bool:
    """The `auto` rule alone: approval unless the annotations say reads-only or additive."""
    if hints is None or hints.read_only_hint is None or hints.destructive_hint is True:
        return True
    if hints.read_only_hint:
        return False
    return hints.destructive_hint is not False


def describe(hints: ToolAnnotations | None) -> str:
    """The annotations that decided, for `crewbus tools list`."""
    if hints is None:
        return "no annotations"
    said = [f"readOnlyHint={hints.read_only_hint}".replace("None", "missing"),
            f"destructiveHint={hints.destructive_hint}".replace("None", "missing")]
    return ", ".join(said)
