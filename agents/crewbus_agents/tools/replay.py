"""The replay rules, enforced where tools are called: the tool loop asks `ReplayGuard`
for every call of a replayed or shadow task instead of running the tool.

- A call matching a recorded one (same tool, same canonical arguments) gets the recorded
  outcome; nothing runs. A recorded call is served once per match in order; asked more
  often, the last recorded outcome is served again (a read repeated reads the same).
- Any other call is a miss. A tool with side effects (it needs approval, or does not
  declare itself read-only: writes, calls out, runs code, an MCP tool without
  `readOnlyHint`) is never run: the model reads that it is not available in replay.
  A read-only tool runs live only when `live_tools` names it (or holds `*`).
- No call ever asks a human: approval is not part of a replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from crewbus_agents.tools.context import ToolContext, ToolOutcome
from crewbus_agents.tools.errors import UnknownTool
from crewbus_agents.tools.hooks import PendingToolCall
from crewbus_agents.tools.registry import ToolRegistry
from crewbus_contracts.replay import ALL_READ_ONLY, ReplayMode

ReplayMatch = Literal["hit", "miss"]
SIDE_EFFECT = "replay_side_effect"
"""`error_type` of a refused call to a tool with side effects."""
NOT_LIVE = "replay_not_live"
"""`error_type` of a refused call to a read-only tool not allowed to run live."""


def canonical_arguments(arguments: Any) -> str:
    """The arguments as one text per meaning: JSON with sorted keys and no spaces (a
    JSON text or an already decoded value); anything else, its stripped text."""
    if isinstance(arguments, str | bytes):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return arguments.strip() if isinstance(arguments, str) else arguments.decode()
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class RecordedCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call of the recorded task: the tool, its canonical arguments, its outcome."""

    tool: str
    arguments: str
    outcome: ToolOutcome


class ReplayGuard:
    """Decides every tool call of one replayed or shadow step (see the module's docstring)."""

    def __init__(self, mode: ReplayMode, recorded: Sequence[RecordedCall] = (),
                 live_tools: Iterable[str] = ()) -> None:
        self.mode = mode
        self.live_tools = frozenset(live_tools)
        self._recorded: dict[tuple[str, str], list[ToolOutcome]] = {}
        for call in recorded:
            self._recorded.setdefault((call.tool, call.arguments), []).append(call.outcome)
        self._served: dict[tuple[str, str], int] = {}

    def recorded(self, tool: str, arguments: Any) -> ToolOutcome | None:
        """The recorded outcome of this call, if the recording has one."""
        key = (tool, canonical_arguments(arguments))
        outcomes = self._recorded.get(key)
        if not outcomes:
            return None
        served = self._served.get(key, 0)
        self._served[key] = served + 1
        return outcomes[min(served, len(outcomes) - 1)]

    def may_run_live(self, tool: str, registry: ToolRegistry) -> bool:
        allowed = tool in self.live_tools or ALL_READ_ONLY in self.live_tools
        return allowed and registry.is_read_only(tool)

    async def call(self, call: PendingToolCall, registry: ToolRegistry,
                   ctx: ToolContext) -> ToolOutcome:
        """The call's outcome under the replay rules; never runs a tool with side effects."""
        name, arguments = call.name, call.request.arguments
        recorded = self.recorded(name, arguments)
        if recorded is not None:
            return msgspec.structs.replace(recorded, replayed=False, duration_s=0.0,
                                           replay_match="hit")
        if name not in registry:
            outcome = ToolOutcome.failure(name, UnknownTool(name, registry.names))
        elif self.may_run_live(name, registry):
            outcome = await registry.call(name, arguments, ctx)
        elif not registry.is_read_only(name):
            outcome = refused(name, SIDE_EFFECT, (
                f"`{name}` is not available in {self.mode}: it has side effects, so a "
                f"{self.mode} task never runs it, and no recorded call matches these "
                "arguments. Answer without it."))
        else:
            outcome = refused(name, NOT_LIVE, (
                f"`{name}` is not available in {self.mode}: no recorded call matches these "
                "arguments and it is not allowed to run live here. Answer without it."))
        return msgspec.structs.replace(outcome, replay_match="miss")


def replay_outcome(match: str, status: str, error_type: str | None) -> str:
    """What became of a replayed call, for metrics and fidelity: `served` (a hit),
    `blocked` (side effects), `refused` (not allowed live, or no such tool) or `live`."""
    if match == "hit":
        return "served"
    if error_type == SIDE_EFFECT:
        return "blocked"
    if error_type in (NOT_LIVE, UnknownTool.__name__) or status == "denied":
        return "refused"
    return "live"


def refused(tool: str, error_type: str, reason: str) -> ToolOutcome:
    return ToolOutcome(tool=tool, status="denied", error=reason, error_type=error_type)
