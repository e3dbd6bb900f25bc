"""Tool-loop hooks backed by the bus: records in JetStream KV, approvals from the step
request, cancellation from the task's state. They survive a restart of any service."""

from __future__ import annotations

from collections.abc import Container

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from crewbus.telemetry import metrics
from crewbus_agents.tools import ChatReply, Decision, PendingToolCall, ToolOutcome
from crewbus_agents.tools.replay import replay_outcome
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import ApprovalDecision, TaskState

_outcome = msgspec.json.Decoder(ToolOutcome)
_reply = msgspec.json.Decoder(ChatReply)
_state = msgspec.json.Decoder(TaskState)
_encode = msgspec.json.encode


class BusToolHooks:
    def __init__(
        self,
        records: KeyValue,
        tasks: KeyValue,
        task_id: str,
        approvals: dict[str, ApprovalDecision],
        trace: TraceScope | None = None,
        replay_mode: str | None = None,
        active: KeyValue | None = None,
        finished: Container[str] = (),
    ) -> None:
        self.replay_mode = replay_mode
        """Set for a replayed or shadow task: its tool calls are counted as such."""
        self.records = records
        self.tasks = tasks
        self.active = active
        """The orchestrator's index of unfinished tasks (`crewbus_active`), if given."""
        self.finished = finished
        """Tasks this replica heard end (their terminal events)."""
        self.task_id = task_id
        self.approvals = approvals
        self.trace = trace
        self.calls: list[tuple[PendingToolCall, ToolOutcome]] = []

    async def before_tool(self, call: PendingToolCall) -> Decision:
        if not call.requires_approval:
            return Decision.allow()
        decision = self.approvals.get(call.key)
        if decision is None:
            return Decision.pause()
        if decision.approved:
            return Decision.allow()
        reason = f"denied by {decision.by}" + (f": {decision.reason}" if decision.reason else "")
        return Decision.deny(reason)

    async def recorded_result(self, call_key: str) -> ToolOutcome | None:
        data = await self._get(call_key)
        return None if data is None else _outcome.decode(data)

    async def record_result(self, call_key: str, outcome: ToolOutcome) -> None:
        await self.records.put(call_key, _encode(outcome))

    async def recorded_reply(self, turn_key: str) -> ChatReply | None:
        data = await self._get(turn_key)
        return None if data is None else _reply.decode(data)

    async def record_reply(self, turn_key: str, reply: ChatReply) -> None:
        await self.records.put(turn_key, _encode(reply))

    async def on_tool_call(self, call: PendingToolCall, outcome: ToolOutcome) -> None:
        self.calls.append((call, outcome))
        if self.replay_mode is not None and outcome.replay_match and not outcome.replayed:
            metrics.record_replay_tool_call(
                self.replay_mode, outcome.replay_match,
                replay_outcome(outcome.replay_match, outcome.status, outcome.error_type))
        if self.trace is not None:
            await self.trace.tool_call(call.name, call.request.id, call.request.arguments, outcome)

    async def check_cancelled(self) -> str | None:
        """Why the step must stop (the task was cancelled or is over), else None.

        The orchestrator indexes a task in `crewbus_active` before it stores it and takes
        it out once its final state is saved, so a task still indexed is not over: its tiny
        key is read instead of the whole state. The state is read (for the reason) when the
        key is gone (the state says why; with no state, nothing stops the step) or when
        this replica heard the task end, which may come before the key is taken out."""
        if (self.active is not None and self.task_id not in self.finished
                and await _get(self.active, self.task_id) is not None):
            return None
        data = await _get(self.tasks, self.task_id)
        if data is None:
            return None
        state = _state.decode(data)
        if state.status == "cancelled" and state.error is not None:
            return state.error.message
        if state.is_final:
            return f"the task is already {state.status}"
        return None

    async def _get(self, key: str) -> bytes | None:
        return await _get(self.records, key)


async def _get(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return entry.value

