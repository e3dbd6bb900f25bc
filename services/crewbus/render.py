"""How the CLI prints events, states and results for people."""

from __future__ import annotations

import time

from crewbus_contracts import (
    ApprovalRequested,
    ApprovalResolved,
    StepFinished,
    StepStarted,
    TaskCancelled,
    TaskCompleted,
    TaskCritiqued,
    TaskEvent,
    TaskFailed,
    TaskPlanned,
    TaskReplanned,
    TaskResult,
    TaskState,
    TaskSubmitted,
)

SIMULATED_NOTE = "answered by the crewbus SIMULATED model, not a real LLM"
DEGRADED_NOTES = {
    "plan_repaired": "the model's plan was invalid and was repaired",
    "single_step": "planning failed; one executor step answered the task directly",
}


def event_line(event: TaskEvent) -> str:
    match event:
        case TaskSubmitted():
            return f"submitted   {event.task_id}: {event.text[:80]}"
        case TaskPlanned():
            how = f" ({event.degraded})" if event.degraded else ""
            lines = [f"planned     round {event.round}: {len(event.steps)} steps{how}"]
            lines += [f"              repaired: {r}" for r in event.repairs]
            for s in event.steps:
                after = f" (after {', '.join(s.depends_on)})" if s.depends_on else ""
                lines.append(f"              {s.id} [{s.role}]{after}: {s.instruction[:70]}")
            return "\n".join(lines)
        case StepStarted():
            return (f"started     round {event.round} {event.step_id} [{event.role}] "
                    f"on {event.worker} (attempt {event.attempt})")
        case StepFinished():
            if event.ok:
                return (f"finished    round {event.round} {event.step_id} [{event.role}] "
                        f"in {event.duration_s:.2f}s")
            return (f"failed      round {event.round} {event.step_id} [{event.role}] "
                    f"after {event.duration_s:.2f}s: {event.error}")
        case TaskCritiqued():
            c = event.critique
            reasons = "; ".join(c.reasons[:2])
            return f"critique    round {event.round}: score {c.score:.2f} {c.verdict} — {reasons}"
        case TaskReplanned():
            return f"re-planning round {event.round}: {event.reason}"
        case ApprovalRequested():
            return (f"APPROVAL    round {event.round} {event.step_id} wants {event.tool} "
                    f"{event.arguments[:200]} — crewbus approve {event.task_id} "
                    f"(or deny; expires in {event.expires_at - time.time():.0f}s)")
        case ApprovalResolved():
            verdict = "approved" if event.approved else "denied"
            why = f": {event.reason}" if event.reason else ""
            return f"{verdict:<11} {event.tool} by {event.by}{why}"
        case TaskCancelled():
            return f"CANCELLED   by {event.by}: {event.reason or 'no reason given'}"
        case TaskCompleted():
            how = f", degraded: {event.result.degraded}" if event.result.degraded else ""
            return (f"completed   score {event.result.score:.2f} in {event.result.rounds} "
                    f"round(s){how}")
        case TaskFailed():
            return f"FAILED      [{event.error.code}] {event.error.message}"


def result_block(task_id: str, result: TaskResult) -> str:
    lines = [
        "Answer:",
        result.answer,
        "",
        f"Score:   {result.score:.2f} ({'accepted' if result.accepted else 'below the bar'})",
        f"Verdict: {result.verdict}",
        f"Rounds:  {result.rounds}",
        f"Tokens:  {result.usage.input_tokens} in / {result.usage.output_tokens} out "
        f"over {result.usage.calls} model calls",
        f"Task:    {task_id}",
    ]
    if result.degraded:
        lines.append(f"Degraded: {result.degraded} ({DEGRADED_NOTES[result.degraded]})")
    if result.simulated_model:
        lines.append(f"Note:    {SIMULATED_NOTE}")
    return "\n".join(lines)


def _trace_id(state: TaskState) -> str:
    """The state's trace id; derived only for a state stored before it was filled in (the
    tracing package is not imported for every `crewbus status`)."""
    if state.trace_id:
        return state.trace_id
    from crewbus.tracing.context import trace_id_of

    return trace_id_of(state)


def state_block(state: TaskState) -> str:
    age = time.time() - state.created_at
    lines = [
        f"Task {state.task_id}: {state.status}",
        f"  text: {state.text[:100]}",
        f"  age {age:.1f}s, deadline in {state.deadline_at - time.time():.1f}s, "
        f"{len(state.rounds)} round(s) of at most {state.limits.max_rounds}",
        f"  variant {state.variant}",
        f"  trace {_trace_id(state)} (crewbus trace {state.task_id})",
    ]
    if state.replay is not None:
        live = ", ".join(state.replay.live_tools) or "none"
        lines.append(f"  {state.replay.mode} of {state.replay.source_task_id} (live tools: "
                     f"{live}; memory {'live' if state.replay.live_memory else 'recorded'})")
    for r in state.rounds:
        lines.append(f"  round {r.number}:")
        rows = [("plan", r.planner), *r.steps.items(), ("critique", r.critic)]
        for step_id, s in rows:
            took = f" {s.duration_s:.2f}s" if s.duration_s is not None else ""
            prompt = f" prompt {s.prompt_version}" if s.prompt_version else ""
            err = f" — {s.error}" if s.error else ""
            lines.append(f"    {step_id:<10} [{s.role or '-'}] {s.status}{took}{prompt}{err}")
        if r.planner.degraded:
            lines.append(f"    degraded: {r.planner.degraded} "
                         f"({DEGRADED_NOTES[r.planner.degraded]})")
        lines += [f"    repaired: {repair}" for repair in r.planner.repairs]
        if r.critique is not None:
            lines.append(f"    score {r.critique.score:.2f} {r.critique.verdict}")
    if state.result is not None:
        lines.append(result_block(state.task_id, state.result))
    for key, a in state.approvals.items():
        decided = ("pending" if a.decision is None else
                   f"{'approved' if a.decision.approved else 'denied'} by {a.decision.by}")
        lines.append(f"  approval {key}: {a.tool} {a.arguments[:80]} — {decided}")
    lines.append(f"  spent: ${state.spent_usd:.6f}, {state.spent_tokens} tokens"
                 + (f", {state.unpriced_calls} unpriced calls" if state.unpriced_calls else ""))
    if state.error is not None:
        lines.append(f"  error [{state.error.code}]: {state.error.message}")
    return "\n".join(lines)
