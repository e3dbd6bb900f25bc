"""The orchestrator's part of a task's trace: the `task` and `round` spans (written when the
task ends, timed from its saved state) and each approval once it is decided."""

from __future__ import annotations

from crewbus.orchestrator.actions import Action, Emit
from crewbus.tracing import (
    SpanDraft,
    SpanPlace,
    Tracer,
    round_context,
    task_context,
    write_approval,
)
from crewbus_contracts import ApprovalResolved, RoundState, TaskState
from crewbus_contracts.events import TERMINAL_EVENTS


async def write_decision_spans(tracer: Tracer, actions: list[Action], state: TaskState) -> None:
    """The spans one decision closes (its approvals, or the task's rounds and the task),
    in one trace message."""
    async with tracer.batch():
        for action in actions:
            if not isinstance(action, Emit):
                continue
            event = action.event
            if isinstance(event, ApprovalResolved):
                approval = state.approvals[event.call_key]
                place = SpanPlace(state.task_id, round_context(state.task_id, approval.round),
                                  approval.round, approval.step_id)
                await write_approval(
                    tracer, place, tool=event.tool, arguments=approval.arguments,
                    decision="approved" if event.approved else "denied",
                    requested_at=approval.requested_at, decided_at=event.at, by=event.by,
                    reason=event.reason,
                )
            elif isinstance(event, TERMINAL_EVENTS):
                await _write_task(tracer, state)


async def _write_task(tracer: Tracer, state: TaskState) -> None:
    task = task_context(state.task_id)
    for round_ in state.rounds:
        start, end = _bounds(round_, state)
        attributes = {"crewbus.round": round_.number,
                      "crewbus.score": round_.critique.score if round_.critique else None,
                      "crewbus.verdict": round_.critique.verdict if round_.critique else None,
                      "crewbus.degraded": round_.planner.degraded}
        await tracer.write(SpanDraft(
            name=f"round {round_.number}", kind="round", task_id=state.task_id,
            context=round_context(state.task_id, round_.number), parent_span_id=task.span_id,
            start=start, end=end, round=round_.number, attributes=attributes,
            output={"plan": round_.plan, "answer": round_.answer, "critique": round_.critique},
        ))
    failed = state.status != "completed"
    await tracer.write(SpanDraft(
        name=f"task {state.task_id}", kind="task", task_id=state.task_id, context=task,
        parent_span_id=None, start=state.created_at, end=state.updated_at,
        status="error" if failed else "ok",
        error=f"{state.error.code}: {state.error.message}" if state.error else None,
        attributes={"crewbus.status": state.status, "crewbus.rounds": len(state.rounds),
                    "crewbus.cost_usd": state.spent_usd, "crewbus.tokens": state.spent_tokens,
                    "crewbus.degraded": state.result.degraded if state.result else None},
        input=state.text, output=state.result,
    ))


def _bounds(round_: RoundState, state: TaskState) -> tuple[float, float]:
    steps = [round_.planner, *round_.steps.values(), round_.critic]
    start = round_.planner.dispatched_at or state.created_at
    ends = [s.finished_at for s in steps if s.finished_at is not None]
    return start, max(ends, default=state.updated_at)
