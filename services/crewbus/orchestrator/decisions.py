"""The task state machine as pure functions: state + input -> changed state + actions.

Nothing here touches the bus, so every rule is testable on its own and replaying an
input against a state that already reflects it changes nothing (redelivery is safe).

A single-agent task (`SubmitTask.target`, for evaluating one agent alone) is one round
with one piece of work, built from the task's text, and ends with that agent's output;
its rules are the last section of this module.
"""

from __future__ import annotations

import msgspec

from crewbus.orchestrator.actions import Action, Dispatch, Emit
from crewbus.tracing.context import task_trace_id
from crewbus_contracts import (
    ApprovalDecision,
    ApprovalRequested,
    ApprovalResolved,
    ApprovalState,
    CritiqueRequest,
    CritiqueResult,
    PastRound,
    Plan,
    PlanRequest,
    PlanResult,
    PlanStep,
    RoundState,
    StepFinished,
    StepOutput,
    StepRequest,
    StepResult,
    StepRole,
    StepState,
    SubmitTask,
    TaskCancelled,
    TaskCompleted,
    TaskCritiqued,
    TaskError,
    TaskFailed,
    TaskPlanned,
    TaskReplanned,
    TaskResult,
    TaskState,
    TaskStatus,
    TaskSubmitted,
    TokenUsage,
    WorkReport,
    WorkResult,
)
from crewbus_contracts.base import AgentRole
from crewbus_contracts.models import MAX_INSTRUCTION_CHARS, Critique
from crewbus_contracts.tasks import CRITIC_ANSWER_KEY
from crewbus_contracts.work import CRITIQUE_STEP_ID, PLAN_STEP_ID

AWAITED = ("dispatched", "running")
"""Statuses of work whose result is expected: a result for anything else changes nothing."""
FALLBACK_STEP_ID = "answer"
FALLBACK_INSTRUCTION = (
    "Answer the overall task directly and completely. Yours is the only step: write the "
    "final answer for the user."
)


def start_task(task_id: str, submit: SubmitTask, now: float) -> tuple[TaskState, list[Action]]:
    state = TaskState(
        task_id=task_id,
        text=submit.text,
        status="planning",
        limits=submit.limits,
        metadata=submit.metadata,
        variant=submit.variant,
        replay=submit.replay,
        created_at=now,
        updated_at=now,
        deadline_at=now + submit.limits.deadline_seconds,
        target=submit.target,
        trace_id=task_trace_id(task_id),
    )
    submitted = TaskSubmitted(task_id=task_id, text=submit.text, at=now)
    actions: list[Action] = [Emit(submitted, f"{task_id}:submitted")]
    if submit.target is not None:
        return state, actions + _begin_single(state, submit.target, now)
    actions += _begin_round(state, now, past_rounds=[])
    return state, actions


def apply_result(state: TaskState, result: WorkResult, now: float) -> list[Action]:
    """Fold one agent result into the task; a stale or repeated result changes nothing.
    The budget is checked once the result's spend is counted and before any new work is
    dispatched, so a task over budget starts nothing more (a finished answer still wins)."""
    if state.is_final or result.round != len(state.rounds):
        return []
    if now > state.deadline_at:
        return fail(state, "deadline_exceeded", _deadline_message(state), now)
    if state.target is not None:
        return _on_single(state, result, now)
    match result:
        case PlanResult():
            actions = _on_plan(state, result, now)
        case StepResult():
            actions = _on_step(state, result, now)
        case CritiqueResult():
            actions = _on_critique(state, result, now)
    return actions


def check_timers(state: TaskState, now: float) -> list[Action]:
    """Deadline first; then approvals nobody gave in time count as denials."""
    if state.is_final:
        return []
    if now > state.deadline_at:
        return fail(state, "deadline_exceeded", _deadline_message(state), now)
    actions: list[Action] = []
    for key, approval in state.pending_approvals.items():
        if now > approval.expires_at:
            waited = state.limits.approval_timeout_seconds
            decision = ApprovalDecision(
                approved=False, by="crewbus", reason=f"approval expired after {waited:g}s", at=now
            )
            actions += resolve_approval(state, key, decision, now)
    return actions


def next_timer(state: TaskState) -> float:
    """When the sweep must look at this task again: its deadline or an approval's expiry."""
    expiries = [a.expires_at for a in state.pending_approvals.values()]
    return min([state.deadline_at, *expiries])


def cancel(state: TaskState, by: str, reason: str, now: float) -> list[Action]:
    """Stop the task: nothing new is dispatched; late results are ignored."""
    if state.is_final:
        return []
    state.status = "cancelled"
    state.error = TaskError(code="cancelled", message=f"cancelled by {by}: {reason or 'no reason'}")
    state.updated_at = now
    event = TaskCancelled(task_id=state.task_id, by=by, reason=reason, at=now)
    return [Emit(event, f"{state.task_id}:cancelled")]


def resolve_approval(
    state: TaskState, call_key: str, decision: ApprovalDecision, now: float
) -> list[Action]:
    """Record the decision and re-dispatch the paused step, which then replays up to the
    call and runs it (or hands the model the denial as the tool's answer)."""
    approval = state.approvals.get(call_key)
    if state.is_final or approval is None or approval.decision is not None:
        return []
    approval.decision = decision
    resolved = ApprovalResolved(
        task_id=state.task_id, call_key=call_key, tool=approval.tool,
        approved=decision.approved, by=decision.by, reason=decision.reason, at=now,
    )
    actions: list[Action] = [Emit(resolved, f"{state.task_id}:{call_key}:resolved")]
    round_ = state.current_round
    step_state = round_.steps.get(approval.step_id)
    if approval.round != round_.number or step_state is None or round_.plan is None:
        return actions
    step = next(s for s in round_.plan.steps if s.id == approval.step_id)
    step_state.status = "dispatched"
    if not state.pending_approvals:
        state.status = "running"
    state.updated_at = now
    decisions = {
        k: a.decision
        for k, a in state.approvals.items()
        if a.decision is not None and a.round == round_.number and a.step_id == step.id
    }
    request = _step_request(state, round_, step, decisions)
    msg_id = f"{state.task_id}:{round_.number}:{step.id}:resume:{len(decisions)}"
    return [*actions, Dispatch(step.role, request, msg_id)]


def fail(state: TaskState, code: str, message: str, now: float) -> list[Action]:
    state.status = "failed"
    state.error = TaskError(code=code, message=message)
    state.updated_at = now
    event = TaskFailed(task_id=state.task_id, error=state.error, at=now)
    return [Emit(event, f"{state.task_id}:failed")]


def _deadline_message(state: TaskState) -> str:
    return (
        f"task passed its deadline of {state.limits.deadline_seconds:g}s "
        f"while {state.status} in round {len(state.rounds)}"
    )


def _begin_round(state: TaskState, now: float, past_rounds: list[PastRound]) -> list[Action]:
    number = len(state.rounds) + 1
    round_ = RoundState(number=number)
    round_.planner.status = "dispatched"
    round_.planner.dispatched_at = now
    state.rounds.append(round_)
    state.status = "planning"
    state.updated_at = now
    request = PlanRequest(
        task_id=state.task_id, round=number, task_text=state.text, past_rounds=past_rounds,
        allow_repair=state.limits.allow_degraded, variant=state.variant,
        replay=state.replay,
    )
    return [Dispatch("planner", request, f"{state.task_id}:{number}:{PLAN_STEP_ID}")]


def _settle(
    state: TaskState, step: StepState, report: WorkReport, error: str | None, now: float
) -> None:
    _spend(state, report)
    step.status = "failed" if error else "done"
    step.error = error
    step.finished_at = now
    step.duration_s = report.duration_s
    step.model = report.model
    step.prompt_version = report.prompt_version
    step.worker = report.worker
    step.attempt = report.attempt
    step.usage = report.usage
    step.cost_usd = report.cost_usd
    step.simulated_model = report.simulated_model


def _finished_event(state: TaskState, step_id: str, step: StepState, now: float) -> Emit:
    event = StepFinished(
        task_id=state.task_id,
        round=len(state.rounds),
        step_id=step_id,
        role=step.role,
        ok=step.status == "done",
        duration_s=step.duration_s or 0.0,
        error=step.error,
        at=now,
    )
    return Emit(event, f"{state.task_id}:{len(state.rounds)}:{step_id}:finished")


def _on_plan(state: TaskState, result: PlanResult, now: float) -> list[Action]:
    round_ = state.current_round
    if round_.planner.status not in AWAITED:
        return []
    _settle(state, round_.planner, result.report, result.error, now)
    actions: list[Action] = [_finished_event(state, PLAN_STEP_ID, round_.planner, now)]
    if over := _over_budget(state, now):
        return actions + over
    plan = _plan_to_run(state, result)
    if plan is None:
        reason = f"planner failed in round {round_.number}: {result.error or 'no plan'}"
        return actions + fail(state, "plan_failed", reason, now)
    round_.plan = plan
    round_.steps = {s.id: StepState(role=s.role) for s in plan.steps}
    state.status = "running"
    state.updated_at = now
    planned = TaskPlanned(
        task_id=state.task_id, round=round_.number, steps=plan.steps, at=now,
        degraded=round_.planner.degraded, repairs=round_.planner.repairs,
    )
    actions.append(Emit(planned, f"{state.task_id}:{round_.number}:planned"))
    return actions + _dispatch_ready(state, now)


def _plan_to_run(state: TaskState, result: PlanResult) -> Plan | None:
    """The planner's plan (noting its repairs); when planning failed and the task allows
    degrading, one executor step that answers the task; else None (the task fails)."""
    planner = state.current_round.planner
    if result.plan is not None and not result.error:
        if result.repairs:
            planner.degraded, planner.repairs = "plan_repaired", list(result.repairs)
        return result.plan
    if not state.limits.allow_degraded:
        return None
    planner.degraded = "single_step"
    step = PlanStep(id=FALLBACK_STEP_ID, role="executor", instruction=FALLBACK_INSTRUCTION)
    return Plan(steps=[step], rationale="fallback: the planner failed, so one executor step "
                "answers the task directly")


def _dispatch_ready(state: TaskState, now: float) -> list[Action]:
    """Dispatch every pending step whose dependencies are done: independent ones in parallel."""
    round_ = state.current_round
    assert round_.plan is not None
    actions: list[Action] = []
    for step in round_.plan.steps:
        step_state = round_.steps[step.id]
        if step_state.status != "pending":
            continue
        if not all(round_.steps[d].status == "done" for d in step.depends_on):
            continue
        step_state.status = "dispatched"
        step_state.dispatched_at = now
        request = _step_request(state, round_, step)
        msg_id = f"{state.task_id}:{round_.number}:{step.id}"
        actions.append(Dispatch(step.role, request, msg_id))
    return actions


def _step_request(
    state: TaskState, round_: RoundState, step: PlanStep,
    approvals: dict[str, ApprovalDecision] | None = None,
) -> StepRequest:
    """Work for one step, with the outputs it depends on (and decisions, when resuming)."""
    return StepRequest(
        task_id=state.task_id, round=round_.number, task_text=state.text, step=step,
        inputs={d: round_.steps[d].output or "" for d in step.depends_on},
        approvals=approvals or {}, variant=state.variant, replay=state.replay,
    )


def _on_step(state: TaskState, result: StepResult, now: float) -> list[Action]:
    round_ = state.current_round
    step = round_.steps.get(result.step_id)
    if step is None or step.status not in AWAITED:
        return []
    if result.awaiting_approval is not None:
        return _pause_for_approval(state, result, now)
    _settle(state, step, result.report, result.error, now)
    if result.output is not None:
        step.output = result.output.content
        step.sources = result.output.sources
    actions: list[Action] = [_finished_event(state, result.step_id, step, now)]
    if result.error:
        message = f"step {result.step_id} ({step.role}) failed: {result.error}"
        return actions + fail(state, "step_failed", message, now)
    if over := _over_budget(state, now):
        return actions + over
    state.updated_at = now
    if all(s.status == "done" for s in round_.steps.values()):
        return actions + _ask_critic(state, now)
    return actions + _dispatch_ready(state, now)


def _pause_for_approval(state: TaskState, result: StepResult, now: float) -> list[Action]:
    request = result.awaiting_approval
    assert request is not None
    if request.call_key in state.approvals:
        return []  # a replayed pause: already waiting
    # No spending yet: the resumed run replays these turns and reports them all at the end.
    state.current_round.steps[result.step_id].status = "awaiting_approval"
    expires = now + state.limits.approval_timeout_seconds
    state.approvals[request.call_key] = ApprovalState(
        round=result.round, step_id=result.step_id, tool=request.tool,
        arguments=request.arguments, requested_at=now, expires_at=expires,
    )
    state.status = "awaiting_approval"
    state.updated_at = now
    event = ApprovalRequested(
        task_id=state.task_id, round=result.round, step_id=result.step_id,
        call_key=request.call_key, tool=request.tool, arguments=request.arguments,
        expires_at=expires, at=now,
    )
    return [Emit(event, f"{state.task_id}:{request.call_key}:approval")]


def _spend(state: TaskState, report: WorkReport) -> None:
    state.spent_tokens += report.usage.input_tokens + report.usage.output_tokens
    if report.cost_usd is None:
        state.unpriced_calls += report.usage.calls
    else:
        state.spent_usd += report.cost_usd


def _over_budget(state: TaskState, now: float) -> list[Action]:
    limits = state.limits
    over_usd = limits.max_cost_usd is not None and state.spent_usd > limits.max_cost_usd
    over_tokens = limits.max_tokens is not None and state.spent_tokens > limits.max_tokens
    if not (over_usd or over_tokens):
        return []
    budget = (f"${limits.max_cost_usd:g}" if over_usd else f"{limits.max_tokens} tokens")
    message = (
        f"spent ${state.spent_usd:.6f} and {state.spent_tokens} tokens, over the budget of "
        f"{budget}"
    )
    if state.unpriced_calls:
        message += f" ({state.unpriced_calls} calls to unpriced models not counted in USD)"
    return fail(state, "budget_exceeded", message, now)


def _ask_critic(state: TaskState, now: float) -> list[Action]:
    round_ = state.current_round
    assert round_.plan is not None
    round_.answer = "\n\n".join(round_.steps[s.id].output or "" for s in round_.plan.sinks())
    round_.critic.status = "dispatched"
    round_.critic.dispatched_at = now
    state.status = "critiquing"
    request = CritiqueRequest(
        task_id=state.task_id,
        round=round_.number,
        task_text=state.text,
        plan=round_.plan,
        answer=round_.answer,
        min_score=state.limits.min_score,
        variant=state.variant, replay=state.replay,
    )
    return [Dispatch("critic", request, f"{state.task_id}:{round_.number}:{CRITIQUE_STEP_ID}")]


def _on_critique(state: TaskState, result: CritiqueResult, now: float) -> list[Action]:
    round_ = state.current_round
    if round_.critic.status not in AWAITED:
        return []
    _settle(state, round_.critic, result.report, result.error, now)
    actions: list[Action] = [_finished_event(state, CRITIQUE_STEP_ID, round_.critic, now)]
    if result.error or result.critique is None:
        reason = f"critic failed in round {round_.number}: {result.error or 'no critique'}"
        return actions + fail(state, "critique_failed", reason, now)
    round_.critique = result.critique
    critiqued = TaskCritiqued(
        task_id=state.task_id, round=round_.number, critique=result.critique, at=now
    )
    actions.append(Emit(critiqued, f"{state.task_id}:{round_.number}:critiqued"))
    if result.critique.score >= state.limits.min_score:
        return actions + _complete(state, accepted=True, now=now)
    if round_.number >= state.limits.max_rounds:
        return actions + _complete(state, accepted=False, now=now)
    if over := _over_budget(state, now):
        return actions + over
    reason = (
        f"score {result.critique.score:.2f} below the bar {state.limits.min_score:.2f}: "
        + "; ".join(result.critique.reasons[:3])
    )
    replanned = TaskReplanned(
        task_id=state.task_id, round=round_.number + 1, reason=reason, at=now
    )
    actions.append(Emit(replanned, f"{state.task_id}:{round_.number + 1}:replanned"))
    return actions + _begin_round(state, now, past_rounds=_past_rounds(state))


def _past_rounds(state: TaskState) -> list[PastRound]:
    return [
        PastRound(round=r.number, plan=r.plan, answer=r.answer or "", critique=r.critique)
        for r in state.rounds
        if r.plan is not None and r.critique is not None
    ]


def _complete(state: TaskState, accepted: bool, now: float) -> list[Action]:
    """Finish with the best-scored round's answer (the last one when accepted)."""
    judged = [r for r in state.rounds if r.critique is not None]
    best = state.current_round if accepted else max(judged, key=lambda r: r.critique.score)  # type: ignore[union-attr]
    assert best.critique is not None
    state.status = "completed"
    state.updated_at = now
    state.result = TaskResult(
        answer=best.answer or "",
        score=best.critique.score,
        verdict=best.critique.verdict,
        accepted=accepted,
        rounds=len(state.rounds),
        usage=_total_usage(state),
        simulated_model=any(s.simulated_model for r in state.rounds for s in _all_steps(r)),
        degraded=best.planner.degraded,
    )
    event = TaskCompleted(task_id=state.task_id, result=state.result, at=now)
    return [Emit(event, f"{state.task_id}:completed")]


def _all_steps(round_: RoundState) -> list[StepState]:
    return [round_.planner, *round_.steps.values(), round_.critic]


def _total_usage(state: TaskState) -> TokenUsage:
    total = TokenUsage()
    for r in state.rounds:
        for s in _all_steps(r):
            total = total.plus(s.usage)
    return total


# -- Single-agent tasks -------------------------------------------------------------------

SINGLE_STEP_ID = FALLBACK_STEP_ID
"""The one step a researcher- or executor-only task runs."""
SINGLE_INSTRUCTION = (
    "Do the task above yourself, completely: yours is the only step, and your output is "
    "the answer."
)
"""A single step's instruction when the task's text is too long to be one."""
SINGLE_STATUS: dict[AgentRole, TaskStatus] = {
    "planner": "planning", "researcher": "running", "executor": "running",
    "critic": "critiquing",
}


def single_plan(state: TaskState, role: StepRole) -> Plan:
    """The one-step plan of a researcher- or executor-only task (a critic-only task shows
    it to the critic): the task's text is the step's instruction when it fits."""
    text = state.text.strip()
    instruction = text if len(text) <= MAX_INSTRUCTION_CHARS else SINGLE_INSTRUCTION
    step = PlanStep(id=SINGLE_STEP_ID, role=role, instruction=instruction)
    return Plan(steps=[step], rationale=f"single-agent task: the {role} alone")


def _begin_single(state: TaskState, role: AgentRole, now: float) -> list[Action]:
    """Round 1 with only `role`'s work, built from the task as the crew would build it."""
    round_ = RoundState(number=1)
    state.rounds.append(round_)
    state.status = SINGLE_STATUS[role]
    state.updated_at = now
    msg_id = f"{state.task_id}:1:{role}"
    if role == "planner":
        round_.planner.status, round_.planner.dispatched_at = "dispatched", now
        request = PlanRequest(task_id=state.task_id, round=1, task_text=state.text,
                              allow_repair=state.limits.allow_degraded, variant=state.variant,
                              replay=state.replay)
        return [Dispatch("planner", request, msg_id)]
    if role == "critic":
        round_.plan = single_plan(state, "executor")
        round_.answer = state.metadata.get(CRITIC_ANSWER_KEY, "")
        round_.critic.status, round_.critic.dispatched_at = "dispatched", now
        critique = CritiqueRequest(
            task_id=state.task_id, round=1, task_text=state.text, plan=round_.plan,
            answer=round_.answer, min_score=state.limits.min_score, variant=state.variant,
            replay=state.replay,
        )
        return [Dispatch("critic", critique, msg_id)]
    round_.plan = single_plan(state, role)
    step = round_.plan.steps[0]
    round_.steps = {step.id: StepState(role=role, status="dispatched", dispatched_at=now)}
    return [Dispatch(role, _step_request(state, round_, step), msg_id)]


def _on_single(state: TaskState, result: WorkResult, now: float) -> list[Action]:
    """The one awaited result ends the task with the agent's output as the answer (its
    structured output stays in the round: the plan, the step's output, the critique)."""
    round_ = state.current_round
    match result:
        case PlanResult() if state.target == "planner":
            work, step_id = round_.planner, PLAN_STEP_ID
        case StepResult() if result.step_id in round_.steps:
            work, step_id = round_.steps[result.step_id], result.step_id
            if work.status in AWAITED and result.awaiting_approval is not None:
                return _pause_for_approval(state, result, now)
        case CritiqueResult() if state.target == "critic":
            work, step_id = round_.critic, CRITIQUE_STEP_ID
        case _:
            return []
    if work.status not in AWAITED:
        return []
    _settle(state, work, result.report, result.error, now)
    actions: list[Action] = [_finished_event(state, step_id, work, now)]
    if over := _over_budget(state, now):
        return actions + over
    match result:
        case PlanResult(plan=Plan() as plan) if not result.error:
            round_.plan = plan
            if result.repairs:
                work.degraded, work.repairs = "plan_repaired", list(result.repairs)
            answer = msgspec.json.encode(plan).decode()
        case StepResult(output=StepOutput() as output) if not result.error:
            work.output, work.sources = output.content, output.sources
            answer = output.content
        case CritiqueResult(critique=Critique() as critique) if not result.error:
            round_.critique = critique
            critiqued = TaskCritiqued(task_id=state.task_id, round=1, critique=critique, at=now)
            actions.append(Emit(critiqued, f"{state.task_id}:1:critiqued"))
            answer = msgspec.json.encode(critique).decode()
        case _:
            code = SINGLE_FAILURE[work.role]
            reason = f"{work.role} failed: {result.error or 'no output'}"
            return actions + fail(state, code, reason, now)
    round_.answer = answer
    return actions + _complete_single(state, answer, now)


SINGLE_FAILURE = {"planner": "plan_failed", "researcher": "step_failed",
                  "executor": "step_failed", "critic": "critique_failed"}
"""The error code of a single-agent task whose agent failed: the crew's for the same work."""


def _complete_single(state: TaskState, answer: str, now: float) -> list[Action]:
    """Completed with the agent's output. Nobody judged it unless the agent is the critic:
    then its score and verdict are the result's; otherwise the verdict is `unjudged`."""
    critique = state.current_round.critique
    state.status = "completed"
    state.updated_at = now
    state.result = TaskResult(
        answer=answer,
        score=critique.score if critique else 0.0,
        verdict=critique.verdict if critique else UNJUDGED,
        accepted=True,
        rounds=1,
        usage=_total_usage(state),
        simulated_model=any(s.simulated_model for s in _all_steps(state.current_round)),
        degraded=state.current_round.planner.degraded,
    )
    event = TaskCompleted(task_id=state.task_id, result=state.result, at=now)
    return [Emit(event, f"{state.task_id}:completed")]


UNJUDGED = "unjudged"
"""The verdict of a single-agent task's result when its agent is not the critic."""
