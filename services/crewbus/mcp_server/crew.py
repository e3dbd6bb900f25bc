"""What crewbus's MCP tools do, over the bus: a client of crewbus like the CLI, holding
no state of its own. Each function returns plain JSON-able data (the tools' structured
results) and raises `CrewRefused` with a sentence when crewbus says no."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
from nats.aio.client import Client as NATS

from crewbus import render
from crewbus.bus.kv_keys import bucket_values
from crewbus.client import CommandRefusedError, CrewbusClient, SubmissionRefusedError
from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus.taskstore import TaskStore
from crewbus.tracing import trace_id_of
from crewbus_contracts import (
    ApprovalRequested,
    CancelTask,
    ResolveApproval,
    SubmitTask,
    TaskEvent,
    TaskLimits,
    TaskState,
    subjects,
)
from crewbus_contracts.events import TERMINAL_EVENTS

Progress = Callable[[int, str], Awaitable[None]]
"""`await progress(n, line)`: the n-th event of the task, as one line."""

MAX_WAIT_S = 3600.0
MAX_PENDING_TASKS = 200
"""Unfinished tasks looked at when listing approvals across tasks."""


class CrewRefused(Exception):
    """crewbus refused the request (unknown task, nothing to approve, bad task text...)."""


class Crew:
    """The crew behind the MCP tools: submit, follow, decide, search."""

    def __init__(self, nc: NATS, by: str = "mcp") -> None:
        self.client = CrewbusClient(nc)
        self.memory = MemoryClient(nc)
        self.by = by

    async def submit(
        self, text: str, *, wait: bool, timeout_s: float, progress: Progress,
        idempotency_key: str | None = None, limits: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            task = SubmitTask(text=text, idempotency_key=idempotency_key,
                              limits=msgspec.convert(limits or {}, TaskLimits))
            accepted = await self.client.submit(task, timeout_s=30)
        except (ValueError, msgspec.ValidationError, SubmissionRefusedError) as exc:
            raise CrewRefused(f"the task was refused: {exc}") from None
        if not wait:
            return {"task_id": accepted.task_id, "duplicate": accepted.duplicate,
                    "status": "queued"}
        await self._follow(accepted.task_id, min(timeout_s, MAX_WAIT_S), progress)
        return await self.task(accepted.task_id)

    async def _follow(self, task_id: str, timeout_s: float, progress: Progress) -> None:
        """Report the task's events until it ends or `timeout_s` passes."""
        with anyio.move_on_after(timeout_s):
            count = 0
            events = self.client.events(task_id)
            try:
                async for event in events:
                    count += 1
                    await progress(count, _line(event))
                    if isinstance(event, TERMINAL_EVENTS):
                        return
            finally:  # unsubscribe now, not when the generator is collected
                close = getattr(events, "aclose", None)
                if close is not None:
                    await close()

    async def task(self, task_id: str) -> dict[str, Any]:
        state = await self.client.state(task_id)
        if state is None:
            raise CrewRefused(f"no task {task_id}")
        return task_summary(state)

    async def cancel(self, task_id: str, reason: str) -> dict[str, Any]:
        return await self._control(CancelTask(task_id=task_id, by=self.by, reason=reason))

    async def resolve(
        self, task_id: str, approved: bool, call_key: str | None, reason: str
    ) -> dict[str, Any]:
        return await self._control(ResolveApproval(
            task_id=task_id, approved=approved, by=self.by, reason=reason, call_key=call_key))

    async def _control(self, command: CancelTask | ResolveApproval) -> dict[str, Any]:
        try:
            accepted = await self.client.control(command)
        except CommandRefusedError as exc:
            raise CrewRefused(f"refused: {exc}") from None
        return {"task_id": accepted.task_id, "status": accepted.status}

    async def pending_approvals(self, task_id: str | None) -> list[dict[str, Any]]:
        """The tool calls waiting for a human, of one task or of every unfinished task."""
        ids = [task_id] if task_id else await self._unfinished()
        store = TaskStore(await self.client.js.key_value(subjects.TASKS_KV))
        pending: list[dict[str, Any]] = []
        for one in ids:
            found = await store.get(one)
            if found is None:
                if task_id:
                    raise CrewRefused(f"no task {task_id}")
                continue
            state = found[0]
            pending += [{"task_id": state.task_id, "call_key": key, "tool": a.tool,
                         "arguments": a.arguments, "step_id": a.step_id,
                         "expires_in_s": round(a.expires_at - time.time(), 1)}
                        for key, a in state.pending_approvals.items()]
        return pending

    async def _unfinished(self) -> list[str]:
        active = await self.client.js.key_value(subjects.ACTIVE_KV)
        return sorted(await bucket_values(active))[:MAX_PENDING_TASKS]

    async def search(self, query: str, k: int, kind: str | None) -> list[dict[str, Any]]:
        try:
            hits = await self.memory.search(query, k=k, kind=kind)  # type: ignore[arg-type]
        except (MemoryClientError, ValueError, msgspec.ValidationError) as exc:
            raise CrewRefused(f"memory search failed: {exc}") from None
        return [{"id": h.id, "score": round(h.score, 4), "kind": h.kind, "text": h.text,
                 "source": h.source, "task_id": h.task_id} for h in hits]


def task_summary(state: TaskState) -> dict[str, Any]:
    """A task's state as an MCP client needs it: where it is, and the answer or the error."""
    summary: dict[str, Any] = {"task_id": state.task_id, "status": state.status,
                               "rounds": len(state.rounds),
                               "spent_tokens": state.spent_tokens,
                               "trace_id": trace_id_of(state)}
    if state.result is not None:
        summary.update(answer=state.result.answer, score=state.result.score,
                       verdict=state.result.verdict,
                       simulated_model=state.result.simulated_model)
    if state.error is not None:
        summary["error"] = {"code": state.error.code, "message": state.error.message}
    pending = state.pending_approvals
    if pending:
        summary["pending_approvals"] = [{"call_key": key, "tool": a.tool,
                                         "arguments": a.arguments}
                                        for key, a in pending.items()]
    return summary


def _line(event: TaskEvent) -> str:
    """The event as the CLI prints it, on one line; an approval names the MCP tool to use."""
    if isinstance(event, ApprovalRequested):
        return (f"approval requested: step {event.step_id} wants {event.tool} "
                f"{event.arguments[:200]} (task {event.task_id}, call_key {event.call_key}); "
                "decide with resolve_approval")
    return " ".join(render.event_line(event).split())
