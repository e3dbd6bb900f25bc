"""The tool layer's errors: one class per condition, each explaining itself.

`ToolFailed` (and its subclasses) is terminal for one call and its message is meant for the
model: the registry turns it into the tool's answer. The others describe misuse of the
registry by the model (`UnknownTool`, `ToolArgumentsInvalid`) or by a developer.
"""

from __future__ import annotations


class ToolError(Exception):
    """Base of every tool-layer error."""


class ToolFailed(ToolError):
    """The tool ran and could not do what was asked; the model sees this message."""


class ToolUnavailable(ToolError):
    """The tool's server cannot be reached right now (starting, restarting, unreachable).

    Not the model's fault, nor a result to record: the step is retried later, and the
    message says which server and why."""


class UnknownTool(ToolError):
    """The model named a tool that is not offered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown tool {name!r}; available tools: {', '.join(known) or 'none'}")


class ToolArgumentsInvalid(ToolError):
    """The model's arguments do not match the tool's argument type."""

    def __init__(self, tool: str, detail: str) -> None:
        self.tool = tool
        self.detail = detail
        super().__init__(
            f"invalid arguments for tool {tool!r}: {detail}. "
            "Call it again with JSON arguments matching its parameters schema."
        )


class ToolDefinitionError(ToolError, TypeError):
    """A developer registered a function the registry cannot expose (a bug, not a model error)."""


class PathOutsideWorkspace(ToolFailed):
    """A file path would leave the task's workspace (absolute, `..`, or a symbolic link)."""


class HostNotAllowed(ToolFailed):
    """`http_get` was asked for a host that is not in the allowlist."""


class SandboxTimeout(ToolFailed):
    """A `python` snippet ran past its time limit and its process group was killed."""


class SandboxMemoryExceeded(ToolFailed):
    """A `python` snippet tried to use more memory than its limit allows."""


class SnippetFailed(ToolFailed):
    """A `python` snippet raised or exited non-zero (in the jail: also what the jail refused,
    such as a socket, a write outside the workspace, another fork); the message carries what
    it printed."""
