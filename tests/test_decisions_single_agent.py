"""Single-agent tasks (`SubmitTask.target`) in the state machine: one round, one piece of
work built from the task, ended by that agent's output; nothing else is ever dispatched,
and the inputs that change nothing in a crew task change nothing here either."""

from __future__ import annotations

import msgspec
import pytest

from crewbus.orchestrator import decisions
from crewbus.orchestrator.actions import Action, Dispatch, Emit
from crewbus_contracts import (
    ApprovalDecision,
    CritiqueRequest,
    PlanRequest,
    StepRequest,
    SubmitTask,
    TaskCritiqued,
    TaskFailed,
    TaskLimits,
    TaskState,
    TaskSubmitted,
    WorkResult,
)
from crewbus_contracts.base import AgentRole
from tests.test_decisions import (
    LATER,
    PAST_DEADLINE,
    T0,
    TASK_ID,
    TEXT,
    critique,
    critique_result,
    diamond,
    paused,
    plan,
    plan_result,
    report,
    step,
    step_result,
)

ANSWER = "Kafka, for its ecosystem"


def single(role: AgentRole, **limits: float) -> tuple[TaskState, list[Action]]:
    metadata = {"answer": ANSWER} if role == "critic" else {}
    submit = SubmitTask(text=TEXT, target=role, metadata=metadata,
                        limits=TaskLimits(**limits))  # type: ignore[arg-type]
    return decisions.start_task(TASK_ID, submit, T0)


def kinds(actions: list[Action]) -> list[str]:
    return [type(a.event).__name__ if isinstance(a, Emit) else f"Dispatch:{a.role}"
            for a in actions]


@pytest.mark.parametrize(("role", "request_type", "status"), [
    ("planner", PlanRequest, "planning"),
    ("researcher", StepRequest, "running"),
    ("executor", StepRequest, "running"),
    ("critic", CritiqueRequest, "critiquing"),
])
def test_a_single_agent_task_dispatches_only_that_agents_work(
    role: AgentRole, request_type: type, status: str
) -> None:
    state, actions = single(role)
    assert kinds(actions) == ["TaskSubmitted", f"Dispatch:{role}"]
    assert isinstance(actions[0], Emit) and isinstance(actions[0].event, TaskSubmitted)
    dispatch = actions[1]
    assert isinstance(dispatch, Dispatch) and isinstance(dispatch.request, request_type)
    assert dispatch.msg_id == f"{TASK_ID}:1:{role}"
    assert state.target == role and state.status == status and len(state.rounds) == 1


def test_a_researcher_or_executor_step_carries_the_task_as_its_instruction() -> None:
    _, actions = single("executor")
    request = actions[1].request  # type: ignore[union-attr]
    assert isinstance(request, StepRequest)
    assert request.step.role == "executor" and request.step.instruction == TEXT
    assert request.task_text == TEXT and request.inputs == {}


def test_a_task_too_long_for_an_instruction_gets_the_generic_one() -> None:
    long_text = "x" * 5000
    _state, actions = decisions.start_task(
        TASK_ID, SubmitTask(text=long_text, target="researcher"), T0)
    request = actions[1].request  # type: ignore[union-attr]
    assert isinstance(request, StepRequest)
    assert request.step.instruction == decisions.SINGLE_INSTRUCTION
    assert request.task_text == long_text


def test_the_critic_judges_the_answer_given_in_the_metadata() -> None:
    _state, actions = single("critic", min_score=0.8)
    request = actions[1].request  # type: ignore[union-attr]
    assert isinstance(request, CritiqueRequest)
    assert request.answer == ANSWER and request.min_score == 0.8
    assert len(request.plan.steps) == 1 and request.plan.steps[0].instruction == TEXT


def test_a_critic_target_without_an_answer_is_refused_at_submission() -> None:
    with pytest.raises(msgspec.ValidationError, match="metadata\\['answer'\\]"):
        msgspec.convert({"text": TEXT, "target": "critic"}, SubmitTask)


def test_the_plan_ends_a_planner_task_as_its_answer_and_stays_in_the_state() -> None:
    state, _ = single("planner")
    actions = decisions.apply_result(state, plan_result(diamond()), LATER)
    assert kinds(actions) == ["StepFinished", "TaskCompleted"]
    assert state.status == "completed" and state.rounds[0].plan == diamond()
    assert state.result is not None
    assert msgspec.json.decode(state.result.answer.encode()) == msgspec.to_builtins(diamond())
    assert state.result.verdict == decisions.UNJUDGED and state.result.rounds == 1
    assert state.rounds[0].planner.prompt_version == "planner-v1"


def test_a_step_output_ends_a_researcher_task() -> None:
    state, _ = single("researcher")
    actions = decisions.apply_result(state, step_result(decisions.SINGLE_STEP_ID), LATER)
    assert kinds(actions) == ["StepFinished", "TaskCompleted"]
    assert state.result is not None
    assert state.result.answer == f"{decisions.SINGLE_STEP_ID} in round 1"
    assert state.rounds[0].steps[decisions.SINGLE_STEP_ID].sources == ["s1"]


def test_a_critique_ends_a_critic_task_with_its_score_and_verdict() -> None:
    state, _ = single("critic")
    actions = decisions.apply_result(state, critique_result(critique(0.4, "thin")), LATER)
    assert kinds(actions) == ["StepFinished", "TaskCritiqued", "TaskCompleted"]
    assert isinstance(actions[1], Emit) and isinstance(actions[1].event, TaskCritiqued)
    # Below the bar, yet no re-plan: the critic's judgement is the output being evaluated.
    assert state.result is not None and state.result.score == 0.4
    assert state.result.verdict == "revise" and state.rounds[0].critique == critique(0.4, "thin")
    assert state.status == "completed"


@pytest.mark.parametrize(("role", "result", "code"), [
    ("planner", plan_result(None, error="no plan"), "plan_failed"),
    ("executor", step_result(decisions.SINGLE_STEP_ID, error="boom"), "step_failed"),
    ("critic", critique_result(None, error="bad json"), "critique_failed"),
])
def test_the_agent_failing_fails_the_task_with_the_crews_code(
    role: AgentRole, result: WorkResult, code: str
) -> None:
    state, _ = single(role)
    actions = decisions.apply_result(state, result, LATER)
    assert kinds(actions) == ["StepFinished", "TaskFailed"]
    assert isinstance(actions[-1], Emit) and isinstance(actions[-1].event, TaskFailed)
    assert state.error is not None and state.error.code == code


def test_a_planner_task_does_not_fall_back_to_one_executor_step() -> None:
    state, _ = single("planner")
    decisions.apply_result(state, plan_result(None, error="invalid"), LATER)
    assert state.status == "failed" and state.rounds[0].steps == {}


@pytest.mark.parametrize(("role", "result"), [
    ("planner", step_result(decisions.SINGLE_STEP_ID)),
    ("planner", critique_result(critique(0.9))),
    ("researcher", plan_result(diamond())),
    ("researcher", step_result("other")),
    ("critic", plan_result(diamond())),
    ("planner", plan_result(diamond(), round=2)),
])
def test_results_for_work_never_dispatched_change_nothing(
    role: AgentRole, result: WorkResult
) -> None:
    state, _ = single(role)
    before = msgspec.json.encode(state)
    assert decisions.apply_result(state, result, LATER) == []
    assert msgspec.json.encode(state) == before


def test_a_repeated_result_changes_nothing() -> None:
    state, _ = single("executor")
    result = step_result(decisions.SINGLE_STEP_ID)
    assert decisions.apply_result(state, result, LATER)
    before = msgspec.json.encode(state)
    assert decisions.apply_result(state, result, LATER + 1) == []
    assert msgspec.json.encode(state) == before


def test_a_step_paused_for_approval_resumes_as_one_step() -> None:
    state, _ = single("executor")
    acted = decisions.apply_result(state, paused(decisions.SINGLE_STEP_ID), LATER)
    assert state.status == "awaiting_approval" and kinds(acted) == ["ApprovalRequested"]
    key = next(iter(state.approvals))
    resumed = decisions.resolve_approval(
        state, key, ApprovalDecision(approved=True, by="a", reason="", at=LATER),
        LATER)
    assert kinds(resumed) == ["ApprovalResolved", "Dispatch:executor"]
    done = decisions.apply_result(state, step_result(decisions.SINGLE_STEP_ID), LATER + 2)
    assert kinds(done) == ["StepFinished", "TaskCompleted"]


def test_deadline_and_budget_hold_for_a_single_agent_task() -> None:
    state, _ = single("planner")
    late = decisions.apply_result(state, plan_result(diamond()), PAST_DEADLINE)
    assert kinds(late) == ["TaskFailed"] and state.error is not None
    assert state.error.code == "deadline_exceeded"
    state, _ = single("planner", max_tokens=5)
    over = decisions.apply_result(state, plan_result(diamond(), rep=report("planner")), LATER)
    assert kinds(over) == ["StepFinished", "TaskFailed"] and state.error is not None
    assert state.error.code == "budget_exceeded"


def test_a_crew_task_is_unchanged_by_the_single_agent_rules() -> None:
    state, actions = decisions.start_task(TASK_ID, SubmitTask(text=TEXT), T0)
    assert state.target is None and kinds(actions) == ["TaskSubmitted", "Dispatch:planner"]
    decisions.apply_result(state, plan_result(plan(step("a"))), LATER)
    assert kinds(decisions.apply_result(state, step_result("a"), LATER)) == [
        "StepFinished", "Dispatch:critic"]
