"""Where the tool loop asks the platform for permission, memory and cancellation.

`ToolHooks` is the seam between the bus-independent loop and the orchestrator:
- `before_tool` decides each call: allow, deny (the reason becomes the tool's answer), or
  pause (the loop returns `awaiting_approval`; the step is re-run once a human decided).
- `recorded_reply`/`record_reply` and `recorded_result`/`record_result` make a re-run step
  replay the model's turns and the tools' outcomes instead of repeating them, so a side
  effect happens once per step even when the step is redelivered.
- `on_tool_call` feeds traces; `check_cancelled` stops the step at its next model or tool call.

`LocalToolHooks` keeps all of this in process memory: right for tests and a single process.
The bus-backed implementation (JetStream KV, surviving restarts) comes with the orchestrator
integration.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import msgspec

from crewbus_agents.tools.chat import ChatReply, ToolCallRequest
from crewbus_agents.tools.context import ToolOutcome

DecisionKind = Literal["allow", "deny", "pause"]


class PendingToolCall(msgspec.Struct, kw_only=True, frozen=True):
    """A call the loop is about to run, with what the hooks need to judge and record it."""

    key: str
    """Unique per task, round, step and call number: the exactly-once record key."""
    index: int
    task_id: str
    step_id: str
    request: ToolCallRequest
    requires_approval: bool

    @property
    def name(self) -> str:
        return self.request.name


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    """What `before_tool` says about a call."""

    kind: DecisionKind
    reason: str = ""

    @classmethod
    def allow(cls) -> Decision:
        return cls(kind="allow")

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(kind="deny", reason=reason)

    @classmethod
    def pause(cls, reason: str = "awaiting approval") -> Decision:
        return cls(kind="pause", reason=reason)


class ToolHooks(Protocol):
    async def before_tool(self, call: PendingToolCall) -> Decision: ...

    async def recorded_result(self, call_key: str) -> ToolOutcome | None: ...

    async def record_result(self, call_key: str, outcome: ToolOutcome) -> None: ...

    async def recorded_reply(self, turn_key: str) -> ChatReply | None: ...

    async def record_reply(self, turn_key: str, reply: ChatReply) -> None: ...

    async def on_tool_call(self, call: PendingToolCall, outcome: ToolOutcome) -> None: ...

    async def check_cancelled(self) -> str | None:
        """The reason the task was cancelled, or None to go on."""
        ...


Approver = Callable[[PendingToolCall], Decision | Awaitable[Decision]]


class LocalToolHooks:
    """In-memory hooks: records and approvals live as long as this object.

    Calls that need approval go to `approver`; without one they are denied, so nothing
    that needs a human runs unattended. `cancel()` makes the loop stop at its next step.
    """

    def __init__(self, approver: Approver | None = None) -> None:
        self.approver = approver
        self.results: dict[str, ToolOutcome] = {}
        self.replies: dict[str, ChatReply] = {}
        self.calls: list[tuple[PendingToolCall, ToolOutcome]] = []
        self.cancelled: str | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        self.cancelled = reason

    async def before_tool(self, call: PendingToolCall) -> Decision:
        if not call.requires_approval:
            return Decision.allow()
        if self.approver is None:
            return Decision.deny(f"{call.name} requires approval and no approver is connected")
        decision = self.approver(call)
        return await decision if inspect.isawaitable(decision) else decision

    async def recorded_result(self, call_key: str) -> ToolOutcome | None:
        return self.results.get(call_key)

    async def record_result(self, call_key: str, outcome: ToolOutcome) -> None:
        self.results[call_key] = outcome

    async def recorded_reply(self, turn_key: str) -> ChatReply | None:
        return self.replies.get(turn_key)

    async def record_reply(self, turn_key: str, reply: ChatReply) -> None:
        self.replies[turn_key] = reply

    async def on_tool_call(self, call: PendingToolCall, outcome: ToolOutcome) -> None:
        self.calls.append((call, outcome))

    async def check_cancelled(self) -> str | None:
        return self.cancelled
