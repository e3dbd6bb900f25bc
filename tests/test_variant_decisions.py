"""The task's variant, named at submission, is kept in its state and carried by every
piece of work the decisions dispatch: plans, steps (resumed ones too) and critiques."""

from __future__ import annotations

from crewbus.orchestrator import decisions
from crewbus.orchestrator.actions import Action, Dispatch
from crewbus_contracts import (
    Critique,
    CritiqueResult,
    Plan,
    PlanResult,
    PlanStep,
    StepResult,
    SubmitTask,
    TaskLimits,
    TokenUsage,
    WorkReport,
)
from crewbus_contracts.models import StepOutput

TASK_ID = "t-v"
T0 = 1_000.0


def report(role: str) -> WorkReport:
    return WorkReport(role=role, model="m", prompt_version="2", simulated_model=True,
                      usage=TokenUsage(), duration_s=0.1, worker="w")


def dispatched(actions: list[Action]) -> list[Dispatch]:
    return [a for a in actions if isinstance(a, Dispatch)]


def test_every_work_request_of_a_task_carries_its_variant() -> None:
    submit = SubmitTask(text="Do it", variant="terse", limits=TaskLimits(max_rounds=2))
    state, actions = decisions.start_task(TASK_ID, submit, T0)
    assert state.variant == "terse"
    sent = dispatched(actions)
    plan = Plan(steps=[PlanStep(id="a", role="researcher", instruction="find"),
                       PlanStep(id="b", role="executor", instruction="write",
                                depends_on=["a"])])
    sent += dispatched(decisions.apply_result(state, PlanResult(
        task_id=TASK_ID, round=1, report=report("planner"), plan=plan), T0 + 1))
    for step_id, role in (("a", "researcher"), ("b", "executor")):
        sent += dispatched(decisions.apply_result(state, StepResult(
            task_id=TASK_ID, round=1, step_id=step_id, report=report(role),
            output=StepOutput(content=step_id)), T0 + 2))
    low = Critique(score=0.1, verdict="revise", reasons=["thin"], suggestions=[])
    sent += dispatched(decisions.apply_result(state, CritiqueResult(
        task_id=TASK_ID, round=1, report=report("critic"), critique=low), T0 + 3))
    assert [type(d.request).__name__ for d in sent] == [
        "PlanRequest", "StepRequest", "StepRequest", "CritiqueRequest", "PlanRequest"]
    assert {d.request.variant for d in sent} == {"terse"}
    assert state.rounds[0].critic.prompt_version == "2"


def test_a_task_without_a_variant_is_production() -> None:
    state, actions = decisions.start_task(TASK_ID, SubmitTask(text="Do it"), T0)
    assert state.variant == "production"
    assert [d.request.variant for d in dispatched(actions)] == ["production"]
