"""The task state machine (`crewbus.orchestrator.decisions`), one transition at a time.

A task goes planning -> running -> critiquing, then either completed or back to planning
for another round (up to `max_rounds`). A step may pause the task in awaiting_approval
until a human (or the approval timeout) decides on a tool call. Any state can end in
failed (a step, the planner or the critic failed, the deadline passed, the budget ran out)
or cancelled.

Every decision is a pure function: it changes the `TaskState` in place and returns the
actions to publish: `Dispatch` (work for an agent role) and `Emit` (a task event), each
with the JetStream msg id that de-duplicates it. Results arrive at least once and in any
order, so much of this file is about inputs that must change nothing: stale (an earlier
round), repeated, early (work that was never dispatched) and late (the task is over).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import pytest

from crewbus.orchestrator import decisions
from crewbus.orchestrator.actions import Action, Dispatch, Emit
from crewbus_contracts import (
    ApprovalDecision,
    ApprovalRequest,
    ApprovalRequested,
    ApprovalResolved,
    ApprovalState,
    Critique,
    CritiqueRequest,
    CritiqueResult,
    PastRound,
    Plan,
    PlanRequest,
    PlanResult,
    PlanStep,
    StepFinished,
    StepOutput,
    StepRequest,
    StepResult,
    StepRole,
    SubmitTask,
    TaskCancelled,
    TaskCompleted,
    TaskError,
    TaskFailed,
    TaskLimits,
    TaskPlanned,
    TaskReplanned,
    TaskResult,
    TaskState,
    TaskSubmitted,
    TokenUsage,
    WorkReport,
    WorkResult,
    event_kind,
)
from crewbus_contracts.models import Verdict

# --------------------------------------------------------------------------------------
# Builders: a task, the agents' results, and states reached by feeding results in.
# --------------------------------------------------------------------------------------

TASK_ID = "t-1"
TEXT = "Compare two message queues"
T0 = 1_000.0
"""When the task is submitted: the deadline (600s by default) counts from here."""
LATER = T0 + 10.0
"""When results arrive unless a test says otherwise: well inside the deadline."""
PAST_DEADLINE = T0 + 10_000.0
KEY = f"{TASK_ID}.1.b.call.0"
"""The tool call step `b` pauses on in the approval tests (the agents' key format)."""
ARGS = '{"url": "https://example.com"}'

S = TypeVar("S", bound=msgspec.Struct)


def submit(metadata: dict[str, str] | None = None, **limits: Any) -> SubmitTask:
    return SubmitTask(text=TEXT, limits=TaskLimits(**limits), metadata=metadata or {})


def report(
    role: str = "researcher", *, tokens: tuple[int, int] = (10, 5), calls: int = 1,
    cost: float | None = 0.001, simulated: bool = False,
) -> WorkReport:
    """How an agent did its work: `tokens` is (input, output); `cost=None` means unpriced."""
    return WorkReport(
        role=role, model="gpt-test", prompt_version=f"{role}-v1", simulated_model=simulated,
        usage=TokenUsage(input_tokens=tokens[0], output_tokens=tokens[1], calls=calls),
        duration_s=0.5, worker=f"{role}-worker-1", attempt=1, cost_usd=cost,
    )


def step(id_: str, *depends_on: str, role: StepRole = "researcher") -> PlanStep:
    return PlanStep(id=id_, role=role, instruction=f"Do {id_}", depends_on=list(depends_on))


def plan(*steps: PlanStep) -> Plan:
    return Plan(steps=list(steps))


def diamond() -> Plan:
    """a, then b and c (both need only a), then d (needs b and c)."""
    return plan(
        step("a"), step("b", "a"), step("c", "a", role="executor"),
        step("d", "b", "c", role="executor"),
    )


def chain() -> Plan:
    """a, then b: b is the executor step that pauses for approval in the approval tests."""
    return plan(step("a"), step("b", "a", role="executor"))


def output_of(step_id: str, round: int = 1) -> str:
    """What `step_result` reports a step produced, so tests can tell rounds apart."""
    return f"{step_id} in round {round}"


def plan_result(
    p: Plan | None, *, round: int = 1, error: str | None = None, rep: WorkReport | None = None
) -> PlanResult:
    return PlanResult(
        task_id=TASK_ID, round=round, report=rep or report("planner"), plan=p, error=error
    )


def step_result(
    step_id: str, *, round: int = 1, error: str | None = None, rep: WorkReport | None = None
) -> StepResult:
    """A finished step: its output, or (with `error`) its failure."""
    output = None if error else StepOutput(content=output_of(step_id, round), sources=["s1"])
    return StepResult(
        task_id=TASK_ID, round=round, step_id=step_id, report=rep or report(),
        output=output, error=error,
    )


def paused(step_id: str, call_key: str = KEY, *, round: int = 1) -> StepResult:
    """A step stopped before a tool call that needs a human's approval."""
    return StepResult(
        task_id=TASK_ID, round=round, step_id=step_id, report=report(),
        awaiting_approval=ApprovalRequest(call_key=call_key, tool="http_get", arguments=ARGS),
    )


def critique(score: float, *reasons: str) -> Critique:
    verdict: Verdict = "accept" if score >= 0.7 else "revise"
    return Critique(score=score, verdict=verdict, reasons=list(reasons))


def critique_result(
    judged: Critique | None, *, round: int = 1, error: str | None = None,
    rep: WorkReport | None = None,
) -> CritiqueResult:
    return CritiqueResult(
        task_id=TASK_ID, round=round, report=rep or report("critic"), critique=judged,
        error=error,
    )


def decision(approved: bool, at: float = LATER + 5, by: str = "alice") -> ApprovalDecision:
    return ApprovalDecision(approved=approved, by=by, reason="looked at it", at=at)


def apply(state: TaskState, result: WorkResult, now: float = LATER) -> list[Action]:
    return decisions.apply_result(state, result, now)


def acted(actions: list[Action]) -> list[Action]:
    """For builders: the input must have done something, or the state is not what it says."""
    assert actions, "a builder's input was ignored"
    return actions


def started(**limits: Any) -> TaskState:
    """Round 1, planner dispatched."""
    state, _ = decisions.start_task(TASK_ID, submit(**limits), T0)
    return state


def state_after_plan(p: Plan | None = None, **limits: Any) -> TaskState:
    """Round 1 running `p` (the diamond by default): its first steps dispatched."""
    state = started(**limits)
    acted(apply(state, plan_result(p or diamond())))
    return state


def state_with_done(p: Plan, *done: str, **limits: Any) -> TaskState:
    state = state_after_plan(p, **limits)
    for step_id in done:
        acted(apply(state, step_result(step_id)))
    return state


def state_at_critique(p: Plan | None = None, **limits: Any) -> TaskState:
    """Every step of round 1 done (a one-step plan by default): the critic dispatched."""
    p = p or plan(step("a"))
    state = state_with_done(p, *(s.id for s in p.steps), **limits)  # plan order: deps first
    assert state.status == "critiquing"
    return state


def paused_on_b() -> TaskState:
    """The chain with a done and b paused on KEY; approvals time out after 60s."""
    state = state_with_done(chain(), "a", approval_timeout_seconds=60.0)
    acted(apply(state, paused("b")))
    return state


def resolved(state: TaskState, call_key: str, approved: bool = True) -> TaskState:
    """`state` with the approval for `call_key` decided."""
    acted(decisions.resolve_approval(state, call_key, decision(approved), LATER + 5))
    return state


def cancel_now(state: TaskState) -> TaskState:
    acted(decisions.cancel(state, "alice", "", LATER + 5))
    return state


def past_deadline(state: TaskState) -> TaskState:
    acted(decisions.check_timers(state, PAST_DEADLINE))
    return state


def run_round(state: TaskState, p: Plan, score: float, now: float = LATER) -> list[Action]:
    """Plan, do every step and judge the current round; the critique's actions."""
    n = len(state.rounds)
    acted(apply(state, plan_result(p, round=n), now))
    for s in p.steps:
        acted(apply(state, step_result(s.id, round=n), now))
    return acted(apply(state, critique_result(critique(score), round=n), now))


def completed_state() -> TaskState:
    state = state_at_critique()
    acted(apply(state, critique_result(critique(0.9))))
    return state


def failed_state() -> TaskState:
    state = state_after_plan(plan(step("a")))
    acted(apply(state, step_result("a", error="boom")))
    return state


def cancelled_state() -> TaskState:
    state = state_after_plan(plan(step("a")))
    acted(decisions.cancel(state, "alice", "changed my mind", LATER))
    return state


FINAL_STATES = [
    pytest.param(completed_state, id="completed"),
    pytest.param(failed_state, id="failed"),
    pytest.param(cancelled_state, id="cancelled"),
]

# Reading actions.


def kinds(actions: list[Action]) -> list[str]:
    """A decision at a glance: `dispatch:<role>` for work, the event's kind for events."""
    return [
        f"dispatch:{a.role}" if isinstance(a, Dispatch) else event_kind(a.event) for a in actions
    ]


def msg_ids(actions: list[Action]) -> list[str]:
    return [a.msg_id for a in actions]


def the_event(actions: list[Action], cls: type[S]) -> S:
    found = [a.event for a in actions if isinstance(a, Emit) and isinstance(a.event, cls)]
    assert len(found) == 1, f"expected one {cls.__name__} in {kinds(actions)}"
    return found[0]


def dispatched(actions: list[Action]) -> list[Dispatch]:
    return [a for a in actions if isinstance(a, Dispatch)]


def step_requests(actions: list[Action]) -> list[StepRequest]:
    return [d.request for d in dispatched(actions) if isinstance(d.request, StepRequest)]


def dispatched_steps(actions: list[Action]) -> list[str]:
    """Plan step ids dispatched, and `critic` when the critic is."""
    return [
        d.request.step.id if isinstance(d.request, StepRequest) else d.role
        for d in dispatched(actions)
    ]


def encoded(state: TaskState) -> bytes:
    return msgspec.json.encode(state)


def clone(state: TaskState) -> TaskState:
    """A copy as the store would hand it back: encoded and decoded."""
    return msgspec.json.decode(encoded(state), type=TaskState)


def assert_ignored(state: TaskState, decide: Callable[[TaskState], list[Action]]) -> None:
    before = encoded(state)
    assert decide(state) == []
    assert encoded(state) == before


# --------------------------------------------------------------------------------------
# start_task: a submission becomes round 1 with the planner at work.
# --------------------------------------------------------------------------------------


def test_start_task_opens_round_one_with_the_planner_dispatched() -> None:
    state, actions = decisions.start_task(
        TASK_ID, submit({"team": "infra"}, deadline_seconds=90), T0
    )

    assert (state.task_id, state.text, state.status) == (TASK_ID, TEXT, "planning")
    assert (state.created_at, state.updated_at, state.deadline_at) == (T0, T0, T0 + 90)
    assert state.metadata == {"team": "infra"}
    assert state.limits.deadline_seconds == 90
    assert [r.number for r in state.rounds] == [1]
    round_ = state.current_round
    assert (round_.planner.status, round_.planner.dispatched_at) == ("dispatched", T0)
    assert round_.plan is None and round_.steps == {}
    assert round_.critic.status == "pending"
    assert (state.result, state.error, state.spent_tokens) == (None, None, 0)
    assert actions == [
        Emit(TaskSubmitted(task_id=TASK_ID, text=TEXT, at=T0), f"{TASK_ID}:submitted"),
        Dispatch(
            "planner",
            PlanRequest(task_id=TASK_ID, round=1, task_text=TEXT, past_rounds=[]),
            f"{TASK_ID}:1:plan",
        ),
    ]


# --------------------------------------------------------------------------------------
# The plan: its steps become the round's work; steps without dependencies run at once.
# --------------------------------------------------------------------------------------


def test_an_accepted_plan_records_its_steps_and_dispatches_the_ready_ones() -> None:
    state = started()
    p = plan(step("a"), step("b", role="executor"), step("c", "a", "b"))

    actions = apply(state, plan_result(p))

    assert kinds(actions) == [
        "step_finished", "task_planned", "dispatch:researcher", "dispatch:executor",
    ]
    assert msg_ids(actions) == [
        f"{TASK_ID}:1:plan:finished", f"{TASK_ID}:1:planned", f"{TASK_ID}:1:a", f"{TASK_ID}:1:b",
    ]
    assert the_event(actions, StepFinished) == StepFinished(
        task_id=TASK_ID, round=1, step_id="plan", role="planner", ok=True, duration_s=0.5,
        at=LATER,
    )
    assert the_event(actions, TaskPlanned) == TaskPlanned(
        task_id=TASK_ID, round=1, steps=p.steps, at=LATER
    )
    assert step_requests(actions)[0] == StepRequest(
        task_id=TASK_ID, round=1, task_text=TEXT, step=p.steps[0], inputs={}, approvals={}
    )
    assert state.status == "running"
    round_ = state.current_round
    assert round_.plan == p
    assert round_.planner.status == "done"
    assert {k: s.status for k, s in round_.steps.items()} == {
        "a": "dispatched", "b": "dispatched", "c": "pending",
    }
    assert {k: s.role for k, s in round_.steps.items()} == {
        "a": "researcher", "b": "executor", "c": "researcher",
    }
    assert round_.steps["a"].dispatched_at == LATER
    assert state.spent_tokens == 15  # the planner's 10 in + 5 out


@pytest.mark.parametrize(
    ("p", "first"),
    [
        pytest.param(plan(step("a")), ["a"], id="one step"),
        pytest.param(plan(step("a"), step("b"), step("c")), ["a", "b", "c"], id="independent"),
        pytest.param(plan(step("a"), step("b", "a"), step("c", "b")), ["a"], id="chain"),
        pytest.param(plan(step("a"), step("b"), step("c", "a", "b")), ["a", "b"], id="fan-in"),
        pytest.param(diamond(), ["a"], id="diamond"),
    ],
)
def test_a_plan_dispatches_every_step_without_dependencies_in_parallel(
    p: Plan, first: list[str]
) -> None:
    state = started()
    assert dispatched_steps(apply(state, plan_result(p))) == first


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param("model reply did not validate", "model reply did not validate", id="error"),
        pytest.param(None, "no plan", id="no plan"),
    ],
)
def test_a_failed_plan_fails_the_task_as_plan_failed_when_degrading_is_off(
    error: str | None, reason: str
) -> None:
    """With `allow_degraded=False`, a planner error (or a result with neither plan nor
    error) ends the task as `plan_failed`, nothing dispatched."""
    state = started(allow_degraded=False)

    actions = apply(state, plan_result(None, error=error))

    assert kinds(actions) == ["step_finished", "task_failed"]
    finished = the_event(actions, StepFinished)
    assert (finished.step_id, finished.error) == ("plan", error)
    # A result with no plan and no error counts as a planner that finished fine.
    assert finished.ok is (error is None)
    expected = TaskError(code="plan_failed", message=f"planner failed in round 1: {reason}")
    assert the_event(actions, TaskFailed) == TaskFailed(task_id=TASK_ID, error=expected, at=LATER)
    assert msg_ids(actions)[-1] == f"{TASK_ID}:failed"
    assert (state.status, state.error) == ("failed", expected)
    assert state.current_round.plan is None and state.current_round.steps == {}


@pytest.mark.parametrize("error", ["model reply did not validate", None])
def test_a_failed_plan_falls_back_to_one_executor_step_by_default(error: str | None) -> None:
    state = started()

    actions = apply(state, plan_result(None, error=error))

    assert kinds(actions) == ["step_finished", "task_planned", "dispatch:executor"]
    (only,) = step_requests(actions)
    assert only.step.role == "executor" and only.step.id == decisions.FALLBACK_STEP_ID
    assert state.status == "running" and state.current_round.planner.degraded == "single_step"
    assert the_event(actions, TaskPlanned).degraded == "single_step"


def test_a_repaired_plan_is_marked_degraded_with_its_repairs() -> None:
    state = started()
    result = plan_result(plan(step("a")))
    result.repairs = ["step 2 repeated the id 'a': renamed it 'a-2'"]

    actions = apply(state, result)

    assert the_event(actions, TaskPlanned).repairs == result.repairs
    assert state.current_round.planner.degraded == "plan_repaired"


# --------------------------------------------------------------------------------------
# Steps: a step is dispatched once all its dependencies are done, with their outputs.
# --------------------------------------------------------------------------------------


def test_a_finished_step_records_how_it_was_done() -> None:
    state = state_after_plan(diamond())
    rep = report(tokens=(70, 30), calls=3, cost=0.25, simulated=True)

    actions = apply(state, step_result("a", rep=rep), LATER + 1)

    assert the_event(actions, StepFinished) == StepFinished(
        task_id=TASK_ID, round=1, step_id="a", role="researcher", ok=True, duration_s=0.5,
        at=LATER + 1,
    )
    a = state.current_round.steps["a"]
    assert (a.status, a.output, a.sources, a.error) == ("done", output_of("a"), ["s1"], None)
    assert (a.finished_at, a.duration_s, a.model, a.prompt_version, a.worker, a.attempt) == (
        LATER + 1, 0.5, "gpt-test", "researcher-v1", "researcher-worker-1", 1,
    )
    assert (a.usage, a.cost_usd, a.simulated_model) == (rep.usage, 0.25, True)
    assert state.spent_tokens == 15 + 100
    assert state.spent_usd == pytest.approx(0.001 + 0.25)
    assert state.updated_at == LATER + 1


DIAMOND_ORDERS = {
    "b before c": [("a", ["b", "c"]), ("b", []), ("c", ["d"]), ("d", ["critic"])],
    "c before b": [("a", ["b", "c"]), ("c", []), ("b", ["d"]), ("d", ["critic"])],
}


@pytest.mark.parametrize("order", list(DIAMOND_ORDERS.values()), ids=list(DIAMOND_ORDERS))
def test_a_diamond_dispatches_the_join_only_when_both_branches_are_done(
    order: list[tuple[str, list[str]]],
) -> None:
    state = state_after_plan(diamond())
    for finished, expected in order:
        actions = apply(state, step_result(finished))
        assert kinds(actions)[0] == "step_finished"
        assert dispatched_steps(actions) == expected, f"after {finished}"
    assert state.status == "critiquing"


def test_a_step_gets_the_outputs_of_exactly_the_steps_it_depends_on() -> None:
    state = state_with_done(diamond(), "a", "b")

    actions = apply(state, step_result("c"))

    assert step_requests(actions) == [
        StepRequest(
            task_id=TASK_ID, round=1, task_text=TEXT, step=diamond().steps[3],
            inputs={"b": output_of("b"), "c": output_of("c")},
        )
    ]
    assert msg_ids(actions) == [f"{TASK_ID}:1:c:finished", f"{TASK_ID}:1:d"]
    assert state.status == "running"


def test_the_last_step_asks_the_critic_with_the_sinks_outputs_joined() -> None:
    p = plan(step("a"), step("b", "a"), step("c", "a"))  # b and c are the sinks
    state = state_with_done(p, "a", "c")  # c finishes first: the answer keeps plan order

    actions = apply(state, step_result("b"), LATER + 2)

    answer = f"{output_of('b')}\n\n{output_of('c')}"
    assert kinds(actions) == ["step_finished", "dispatch:critic"]
    assert actions[1] == Dispatch(
        "critic",
        CritiqueRequest(task_id=TASK_ID, round=1, task_text=TEXT, plan=p, answer=answer),
        f"{TASK_ID}:1:critique",
    )
    assert state.status == "critiquing"
    assert state.current_round.answer == answer
    critic = state.current_round.critic
    assert (critic.status, critic.dispatched_at) == ("dispatched", LATER + 2)


def test_the_critic_is_shown_the_tasks_own_bar() -> None:
    state = state_with_done(plan(step("a"), step("b")), "a", min_score=0.85)

    actions = apply(state, step_result("b"))

    (request,) = [d.request for d in dispatched(actions)]
    assert isinstance(request, CritiqueRequest) and request.min_score == 0.85


def test_a_failed_step_fails_the_task_and_dispatches_nothing() -> None:
    state = state_after_plan(plan(step("a"), step("b"), step("c", "a")))

    actions = apply(state, step_result("a", error="tool crashed"))

    assert kinds(actions) == ["step_finished", "task_failed"]
    finished = the_event(actions, StepFinished)
    assert (finished.ok, finished.error) == (False, "tool crashed")
    expected = TaskError(code="step_failed", message="step a (researcher) failed: tool crashed")
    assert the_event(actions, TaskFailed).error == expected
    assert (state.status, state.error) == ("failed", expected)
    steps = state.current_round.steps
    assert {k: s.status for k, s in steps.items()} == {
        "a": "failed", "b": "dispatched", "c": "pending",
    }
    assert steps["a"].error == "tool crashed"
    assert state.spent_tokens == 30  # a failed step's work is still paid for


# --------------------------------------------------------------------------------------
# The critique: accept, try another round, or settle for the best round at max_rounds.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "simulated"),
    [pytest.param(0.7, False, id="exactly the bar"), pytest.param(1.0, True, id="simulated")],
)
def test_a_critique_at_or_above_the_bar_completes_the_task(score: float, simulated: bool) -> None:
    state = started()
    acted(apply(state, plan_result(
        plan(step("a"), step("b", role="executor")), rep=report("planner", tokens=(100, 20))
    )))
    acted(apply(state, step_result("a", rep=report(tokens=(30, 3)))))
    acted(apply(state, step_result(
        "b", rep=report("executor", tokens=(40, 4), calls=2, simulated=simulated)
    )))

    judged = critique(score, "clear")
    actions = apply(state, critique_result(judged, rep=report("critic", tokens=(50, 5))))

    assert kinds(actions) == ["step_finished", "task_critiqued", "task_completed"]
    assert msg_ids(actions) == [
        f"{TASK_ID}:1:critique:finished", f"{TASK_ID}:1:critiqued", f"{TASK_ID}:completed",
    ]
    expected = TaskResult(
        answer=f"{output_of('a')}\n\n{output_of('b')}",
        score=score,
        verdict="accept",
        accepted=True,
        rounds=1,
        usage=TokenUsage(input_tokens=220, output_tokens=32, calls=5),  # all four agents
        simulated_model=simulated,
    )
    assert (state.status, state.result, state.error) == ("completed", expected, None)
    assert the_event(actions, TaskCompleted) == TaskCompleted(
        task_id=TASK_ID, result=expected, at=LATER
    )
    assert state.current_round.critique == judged
    assert state.current_round.critic.status == "done"


def test_a_critique_below_the_bar_replans_with_the_past_rounds() -> None:
    p = plan(step("a"))
    state = state_at_critique(p)
    judged = critique(0.4, "too vague", "no sources", "wrong units", "a typo")

    actions = apply(state, critique_result(judged), LATER + 3)

    assert kinds(actions) == [
        "step_finished", "task_critiqued", "task_replanned", "dispatch:planner",
    ]
    assert msg_ids(actions) == [
        f"{TASK_ID}:1:critique:finished", f"{TASK_ID}:1:critiqued",
        f"{TASK_ID}:2:replanned", f"{TASK_ID}:2:plan",
    ]
    assert the_event(actions, TaskReplanned) == TaskReplanned(
        task_id=TASK_ID, round=2, at=LATER + 3,
        reason="score 0.40 below the bar 0.70: too vague; no sources; wrong units",
    )
    assert actions[-1] == Dispatch(
        "planner",
        PlanRequest(
            task_id=TASK_ID, round=2, task_text=TEXT,
            past_rounds=[PastRound(round=1, plan=p, answer=output_of("a"), critique=judged)],
        ),
        f"{TASK_ID}:2:plan",
    )
    assert state.status == "planning"
    assert [r.number for r in state.rounds] == [1, 2]
    assert state.rounds[0].critique == judged
    assert state.current_round.planner.status == "dispatched"
    assert state.result is None


def test_each_new_round_shows_the_planner_every_judged_round() -> None:
    state = started(max_rounds=3)
    run_round(state, plan(step("a")), 0.2)

    actions = run_round(state, plan(step("x"), step("y")), 0.3)

    [request] = [d.request for d in dispatched(actions)]
    assert isinstance(request, PlanRequest)
    assert request.round == 3
    assert [(r.round, r.answer, r.critique.score) for r in request.past_rounds] == [
        (1, output_of("a", 1), 0.2),
        (2, f"{output_of('x', 2)}\n\n{output_of('y', 2)}", 0.3),
    ]


@pytest.mark.parametrize(
    ("scores", "best"),
    [
        pytest.param((0.6, 0.5), 1, id="first round best"),
        pytest.param((0.3, 0.5), 2, id="last round best"),
        pytest.param((0.5, 0.5), 1, id="a tie keeps the earlier round"),
    ],
)
def test_at_max_rounds_the_best_scored_round_is_the_answer(
    scores: tuple[float, float], best: int
) -> None:
    state = started(max_rounds=2)
    run_round(state, plan(step("a")), scores[0])

    actions = run_round(state, plan(step("a")), scores[1])

    assert kinds(actions) == ["step_finished", "task_critiqued", "task_completed"]
    assert state.status == "completed"
    assert state.result is not None
    assert (state.result.answer, state.result.score) == (output_of("a", best), scores[best - 1])
    assert (state.result.accepted, state.result.verdict, state.result.rounds) == (
        False, "revise", 2,
    )
    # Usage counts every round, not only the chosen one: 3 agents x 2 rounds x 15 tokens.
    assert state.result.usage == TokenUsage(input_tokens=60, output_tokens=30, calls=6)


@pytest.mark.parametrize(
    ("error", "reason"),
    [pytest.param("timeout", "timeout", id="error"), pytest.param(None, "no critique", id="none")],
)
def test_a_critic_failure_fails_the_task(error: str | None, reason: str) -> None:
    state = state_at_critique()

    actions = apply(state, critique_result(None, error=error))

    assert kinds(actions) == ["step_finished", "task_failed"]
    expected = TaskError(code="critique_failed", message=f"critic failed in round 1: {reason}")
    assert (state.status, state.error, state.result) == ("failed", expected, None)
    assert state.current_round.critique is None


# --------------------------------------------------------------------------------------
# Inputs that change nothing: stale, early, repeated, late.
# --------------------------------------------------------------------------------------


def in_round_two() -> TaskState:
    """Round 1 judged below the bar; round 2 planned with a step `a` of its own, running."""
    state = started()
    run_round(state, plan(step("a")), 0.2)
    acted(apply(state, plan_result(plan(step("a"), step("b")), round=2)))
    return state


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(plan_result(plan(step("z"))), id="round-1 plan"),
        pytest.param(step_result("a"), id="round-1 step named like a round-2 step"),
        pytest.param(step_result("a", error="late crash"), id="round-1 step failure"),
        pytest.param(critique_result(critique(1.0)), id="round-1 critique"),
        pytest.param(paused("a", f"{TASK_ID}.1.a.call.0"), id="round-1 pause"),
        pytest.param(step_result("a", round=3), id="a round not started"),
    ],
)
def test_a_result_for_another_round_changes_nothing(result: WorkResult) -> None:
    assert_ignored(in_round_two(), lambda s: apply(s, result))


def planner_not_dispatched() -> TaskState:
    """Built by hand: decisions always open a round with its planner dispatched."""
    state = started()
    state.current_round.planner.status = "pending"
    return state


@pytest.mark.parametrize(
    ("build", "result"),
    [
        pytest.param(
            lambda: state_after_plan(diamond()), step_result("d"), id="step still pending"
        ),
        pytest.param(
            lambda: state_after_plan(diamond()), step_result("d", error="x"),
            id="failure of a step still pending",
        ),
        pytest.param(lambda: state_after_plan(diamond()), step_result("zz"), id="unknown step"),
        pytest.param(
            lambda: state_after_plan(diamond()), critique_result(critique(0.9)),
            id="critique before the critic is dispatched",
        ),
        pytest.param(
            planner_not_dispatched, plan_result(diamond()), id="plan with the planner pending"
        ),
        pytest.param(
            lambda: state_after_plan(diamond()), plan_result(plan(step("other"))),
            id="a second, different plan for the round",
        ),
        pytest.param(paused_on_b, step_result("b"), id="a result for a step awaiting approval"),
    ],
)
def test_a_result_for_work_not_awaited_changes_nothing(
    build: Callable[[], TaskState], result: WorkResult
) -> None:
    assert_ignored(build(), lambda s: apply(s, result))


@pytest.mark.parametrize(
    ("build", "result"),
    [
        pytest.param(started, plan_result(diamond()), id="plan"),
        pytest.param(lambda: state_after_plan(diamond()), step_result("a"), id="step"),
        pytest.param(
            lambda: state_with_done(chain(), "a"), step_result("b"), id="last step"
        ),
        pytest.param(
            lambda: state_after_plan(diamond()), step_result("a", error="boom"),
            id="failed step",
        ),
        pytest.param(state_at_critique, critique_result(critique(0.9)), id="accepting critique"),
        pytest.param(state_at_critique, critique_result(critique(0.2)), id="replanning critique"),
        pytest.param(state_at_critique, critique_result(None, error="x"), id="critic failure"),
        pytest.param(lambda: state_with_done(chain(), "a"), paused("b"), id="approval pause"),
    ],
)
def test_a_repeated_result_changes_nothing_the_second_time(
    build: Callable[[], TaskState], result: WorkResult
) -> None:
    state = build()
    acted(apply(state, result))

    assert_ignored(state, lambda s: apply(s, result, LATER + 1))



@pytest.mark.parametrize("now", [LATER, PAST_DEADLINE], ids=["in time", "past the deadline"])
@pytest.mark.parametrize(
    "result",
    [
        pytest.param(plan_result(diamond()), id="plan"),
        pytest.param(step_result("a"), id="step"),
        pytest.param(critique_result(critique(0.9)), id="critique"),
        pytest.param(paused("a", f"{TASK_ID}.1.a.call.0"), id="pause"),
    ],
)
@pytest.mark.parametrize("final", FINAL_STATES)
def test_a_result_after_the_task_ended_changes_nothing(
    final: Callable[[], TaskState], result: WorkResult, now: float
) -> None:
    assert_ignored(final(), lambda s: apply(s, result, now))


def test_a_result_after_the_deadline_fails_the_task_instead_of_applying() -> None:
    state = state_after_plan(diamond(), deadline_seconds=60)

    actions = apply(state, step_result("a"), T0 + 60.5)

    expected = TaskError(
        code="deadline_exceeded",
        message="task passed its deadline of 60s while running in round 1",
    )
    assert actions == [
        Emit(TaskFailed(task_id=TASK_ID, error=expected, at=T0 + 60.5), f"{TASK_ID}:failed")
    ]
    assert (state.status, state.error, state.updated_at) == ("failed", expected, T0 + 60.5)
    assert state.current_round.steps["a"].status == "dispatched"  # the result was not applied


def test_a_result_exactly_at_the_deadline_still_counts() -> None:
    state = state_after_plan(diamond(), deadline_seconds=60)

    actions = apply(state, step_result("a"), T0 + 60)

    assert dispatched_steps(actions) == ["b", "c"]
    assert state.status == "running"


# --------------------------------------------------------------------------------------
# Approvals: a step pauses before a tool call; a decision re-dispatches it.
# --------------------------------------------------------------------------------------


def test_a_step_pausing_on_a_tool_call_asks_for_approval() -> None:
    state = state_with_done(chain(), "a", approval_timeout_seconds=60.0)
    spent = (state.spent_tokens, state.spent_usd)

    actions = apply(state, paused("b"), LATER + 1)

    assert actions == [
        Emit(
            ApprovalRequested(
                task_id=TASK_ID, round=1, step_id="b", call_key=KEY, tool="http_get",
                arguments=ARGS, expires_at=LATER + 61, at=LATER + 1,
            ),
            f"{TASK_ID}:{KEY}:approval",
        )
    ]
    assert state.status == "awaiting_approval"
    assert state.current_round.steps["b"].status == "awaiting_approval"
    assert state.approvals == {
        KEY: ApprovalState(
            round=1, step_id="b", tool="http_get", arguments=ARGS,
            requested_at=LATER + 1, expires_at=LATER + 61,
        )
    }
    assert list(state.pending_approvals) == [KEY]
    # Nothing is spent yet: the resumed run reports all its turns when it finishes.
    assert (state.spent_tokens, state.spent_usd) == spent


@pytest.mark.parametrize("approved", [True, False], ids=["approve", "deny"])
def test_resolving_an_approval_re_dispatches_the_step_with_the_decision(approved: bool) -> None:
    state = paused_on_b()
    given = decision(approved)

    actions = decisions.resolve_approval(state, KEY, given, LATER + 5)

    assert actions == [
        Emit(
            ApprovalResolved(
                task_id=TASK_ID, call_key=KEY, tool="http_get", approved=approved, by="alice",
                reason="looked at it", at=LATER + 5,
            ),
            f"{TASK_ID}:{KEY}:resolved",
        ),
        Dispatch(
            "executor",
            StepRequest(
                task_id=TASK_ID, round=1, task_text=TEXT, step=chain().steps[1],
                inputs={"a": output_of("a")}, approvals={KEY: given},
            ),
            f"{TASK_ID}:1:b:resume:1",
        ),
    ]
    assert state.status == "running"
    assert state.current_round.steps["b"].status == "dispatched"
    assert state.approvals[KEY].decision == given
    assert state.pending_approvals == {}


@pytest.mark.parametrize(
    ("build", "call_key"),
    [
        pytest.param(paused_on_b, "t-1.1.b.call.9", id="unknown call key"),
        pytest.param(
            lambda: resolved(paused_on_b(), KEY), KEY, id="already resolved"
        ),
        pytest.param(lambda: cancel_now(paused_on_b()), KEY, id="task cancelled"),
        pytest.param(lambda: past_deadline(paused_on_b()), KEY, id="task failed"),
    ],
)
def test_resolving_an_approval_that_is_not_pending_changes_nothing(
    build: Callable[[], TaskState], call_key: str
) -> None:
    assert_ignored(build(), lambda s: decisions.resolve_approval(
        s, call_key, decision(False, by="bob"), LATER + 9
    ))


@pytest.mark.parametrize(
    ("build", "result"),
    [
        pytest.param(paused_on_b, paused("b"), id="while waiting"),
        pytest.param(lambda: resolved(paused_on_b(), KEY), paused("b"), id="after resuming"),
    ],
)
def test_the_same_pause_again_changes_nothing(
    build: Callable[[], TaskState], result: WorkResult
) -> None:
    assert_ignored(build(), lambda s: apply(s, result, LATER + 7))


def test_a_resumed_step_can_pause_again_and_then_finish() -> None:
    state = resolved(paused_on_b(), KEY)
    second = f"{TASK_ID}.1.b.call.1"

    assert kinds(apply(state, paused("b", second), LATER + 6)) == ["approval_requested"]
    assert state.status == "awaiting_approval"
    actions = decisions.resolve_approval(state, second, decision(False), LATER + 7)

    [request] = step_requests(actions)
    assert list(request.approvals) == [KEY, second]  # every decision on b so far
    assert msg_ids(actions)[-1] == f"{TASK_ID}:1:b:resume:2"
    assert dispatched_steps(apply(state, step_result("b"), LATER + 8)) == ["critic"]
    assert state.status == "critiquing"


def test_two_paused_steps_keep_the_task_waiting_until_both_are_resolved() -> None:
    ka, kb = f"{TASK_ID}.1.a.call.0", f"{TASK_ID}.1.b.call.0"
    state = state_after_plan(plan(step("a"), step("b")))
    acted(apply(state, paused("a", ka)))
    acted(apply(state, paused("b", kb)))

    acted(decisions.resolve_approval(state, ka, decision(True), LATER + 1))
    assert state.status == "awaiting_approval"
    assert list(state.pending_approvals) == [kb]

    acted(decisions.resolve_approval(state, kb, decision(True), LATER + 2))
    assert state.status == "running"


def test_another_step_finishing_while_one_waits_keeps_the_task_waiting() -> None:
    ka = f"{TASK_ID}.1.a.call.0"
    state = state_after_plan(plan(step("a"), step("b")))
    acted(apply(state, paused("a", ka)))

    actions = apply(state, step_result("b"))

    assert kinds(actions) == ["step_finished"]  # no critic while a is paused
    assert state.status == "awaiting_approval"
    acted(decisions.resolve_approval(state, ka, decision(True), LATER + 1))
    assert dispatched_steps(apply(state, step_result("a"), LATER + 2)) == ["critic"]


# --------------------------------------------------------------------------------------
# Timers: the deadline, and approvals nobody gave in time.
# --------------------------------------------------------------------------------------


def test_check_timers_fails_a_task_past_its_deadline() -> None:
    state = state_after_plan(diamond(), deadline_seconds=60)

    actions = decisions.check_timers(state, T0 + 61)

    assert kinds(actions) == ["task_failed"]
    assert state.error == TaskError(
        code="deadline_exceeded",
        message="task passed its deadline of 60s while running in round 1",
    )
    assert state.status == "failed"


def test_an_approval_nobody_gave_in_time_is_denied_by_crewbus() -> None:
    state = paused_on_b()  # expires at LATER + 60
    now = LATER + 61

    actions = decisions.check_timers(state, now)

    denial = ApprovalDecision(
        approved=False, by="crewbus", reason="approval expired after 60s", at=now
    )
    assert kinds(actions) == ["approval_resolved", "dispatch:executor"]
    resolved_event = the_event(actions, ApprovalResolved)
    assert (resolved_event.approved, resolved_event.by, resolved_event.reason) == (
        False, "crewbus", "approval expired after 60s",
    )
    assert step_requests(actions)[0].approvals == {KEY: denial}
    assert msg_ids(actions)[-1] == f"{TASK_ID}:1:b:resume:1"
    assert state.approvals[KEY].decision == denial
    assert state.status == "running"


@pytest.mark.parametrize(
    ("build", "now"),
    [
        pytest.param(paused_on_b, LATER + 1, id="approval not yet due"),
        pytest.param(paused_on_b, LATER + 60, id="approval exactly at expiry"),
        pytest.param(lambda: state_after_plan(diamond()), T0 + 600, id="exactly at deadline"),
        pytest.param(completed_state, PAST_DEADLINE, id="completed"),
        pytest.param(cancelled_state, PAST_DEADLINE, id="cancelled"),
        pytest.param(lambda: cancel_now(paused_on_b()), PAST_DEADLINE, id="cancelled paused"),
    ],
)
def test_check_timers_with_nothing_due_changes_nothing(
    build: Callable[[], TaskState], now: float
) -> None:
    assert_ignored(build(), lambda s: decisions.check_timers(s, now))


def test_the_deadline_comes_before_an_expired_approval() -> None:
    state = paused_on_b()

    actions = decisions.check_timers(state, T0 + 601)

    assert kinds(actions) == ["task_failed"]
    assert state.error is not None
    assert state.error.message == (
        "task passed its deadline of 600s while awaiting_approval in round 1"
    )
    assert state.approvals[KEY].decision is None


def two_paused() -> TaskState:
    """a paused at LATER, b at LATER + 5; both time out after 60s."""
    state = state_after_plan(plan(step("a"), step("b")), approval_timeout_seconds=60.0)
    acted(apply(state, paused("a", f"{TASK_ID}.1.a.call.0"), LATER))
    acted(apply(state, paused("b", f"{TASK_ID}.1.b.call.0"), LATER + 5))
    return state


def paused_past_the_deadline() -> TaskState:
    """b paused with the default 3600s approval timeout: it expires after the deadline."""
    state = state_with_done(chain(), "a")
    acted(apply(state, paused("b")))
    return state


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(lambda: state_after_plan(diamond()), T0 + 600, id="no approvals"),
        pytest.param(paused_on_b, LATER + 60, id="approval before the deadline"),
        pytest.param(paused_past_the_deadline, T0 + 600, id="approval after the deadline"),
        pytest.param(lambda: resolved(paused_on_b(), KEY), T0 + 600, id="approval resolved"),
        pytest.param(two_paused, LATER + 60, id="earliest of two"),
    ],
)
def test_next_timer_is_the_deadline_or_the_earliest_pending_expiry(
    build: Callable[[], TaskState], expected: float
) -> None:
    assert decisions.next_timer(build()) == expected


# --------------------------------------------------------------------------------------
# cancel
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "message"),
    [("too slow", "cancelled by alice: too slow"), ("", "cancelled by alice: no reason")],
)
def test_cancel_ends_the_task_as_cancelled(reason: str, message: str) -> None:
    state = state_after_plan(diamond())

    actions = decisions.cancel(state, "alice", reason, LATER + 1)

    assert actions == [
        Emit(
            TaskCancelled(task_id=TASK_ID, by="alice", reason=reason, at=LATER + 1),
            f"{TASK_ID}:cancelled",
        )
    ]
    assert (state.status, state.updated_at) == ("cancelled", LATER + 1)
    assert state.error == TaskError(code="cancelled", message=message)
    assert state.is_final


@pytest.mark.parametrize("final", FINAL_STATES)
def test_cancelling_a_task_that_ended_changes_nothing(final: Callable[[], TaskState]) -> None:
    assert_ignored(final(), lambda s: decisions.cancel(s, "bob", "again", LATER + 1))


# --------------------------------------------------------------------------------------
# Budgets: USD and tokens, counted over every agent's report.
# --------------------------------------------------------------------------------------


def test_crossing_the_usd_budget_fails_the_task_with_the_spend() -> None:
    state = started(max_cost_usd=0.01)
    acted(apply(state, plan_result(plan(step("a"), step("b")), rep=report("planner", cost=0.004))))
    assert state.status == "running"  # $0.004: under

    actions = apply(state, step_result("a", rep=report(cost=0.008)))

    assert kinds(actions) == ["step_finished", "task_failed"]
    assert state.error == TaskError(
        code="budget_exceeded",
        message="spent $0.012000 and 30 tokens, over the budget of $0.01",
    )
    assert state.status == "failed"


def test_crossing_the_token_budget_fails_the_task_with_the_spend() -> None:
    state = started(max_tokens=20)
    acted(apply(state, plan_result(plan(step("a"), step("b")))))
    assert state.status == "running"  # 15 tokens: under

    apply(state, step_result("a"))

    assert state.error == TaskError(
        code="budget_exceeded",
        message="spent $0.002000 and 30 tokens, over the budget of 20 tokens",
    )


def test_spending_exactly_the_budget_is_not_over_it() -> None:
    state = started(max_tokens=30, max_cost_usd=0.002)
    acted(apply(state, plan_result(plan(step("a"), step("b")))))

    actions = apply(state, step_result("a"))

    assert kinds(actions) == ["step_finished"]
    assert (state.spent_tokens, state.status) == (30, "running")


def test_unpriced_calls_are_counted_apart_and_named_when_over_budget() -> None:
    state = started(max_tokens=20, max_cost_usd=0.001)
    unpriced = plan_result(plan(step("a"), step("b")), rep=report("planner", cost=None, calls=2))
    acted(apply(state, unpriced))
    assert (state.unpriced_calls, state.spent_usd) == (2, 0.0)

    apply(state, step_result("a", rep=report(cost=None)))

    assert state.error == TaskError(
        code="budget_exceeded",
        message=(
            "spent $0.000000 and 30 tokens, over the budget of 20 tokens "
            "(3 calls to unpriced models not counted in USD)"
        ),
    )


def test_unpriced_calls_never_cross_a_usd_budget() -> None:
    state = started(max_cost_usd=0.001)
    acted(apply(state, plan_result(plan(step("a")), rep=report("planner", cost=None))))

    acted(apply(state, step_result("a", rep=report(cost=None, calls=4))))

    assert (state.status, state.unpriced_calls, state.spent_usd) == ("critiquing", 5, 0.0)


def test_the_critique_that_completes_a_task_keeps_it_completed_even_over_budget() -> None:
    """Today's behaviour: the budget is checked only while the task goes on."""
    state = state_at_critique(max_cost_usd=0.01)

    actions = apply(state, critique_result(critique(0.9), rep=report("critic", cost=1.0)))

    assert kinds(actions)[-1] == "task_completed"
    assert state.status == "completed"
    assert state.spent_usd > 0.01


BUDGET_CROSSINGS = [
    pytest.param(
        lambda: started(max_cost_usd=0.01),
        plan_result(chain(), rep=report("planner", cost=0.02)),
        id="the plan",
    ),
    pytest.param(
        lambda: state_after_plan(chain(), max_cost_usd=0.01),
        step_result("a", rep=report(cost=0.02)),
        id="a step with dependents",
    ),
    pytest.param(
        lambda: state_with_done(chain(), "a", max_cost_usd=0.01),
        step_result("b", rep=report("executor", cost=0.02)),
        id="the last step",
    ),
    pytest.param(
        lambda: state_at_critique(max_cost_usd=0.01),
        critique_result(critique(0.2), rep=report("critic", cost=0.02)),
        id="a critique that replans",
    ),
]


@pytest.mark.parametrize(("build", "result"), BUDGET_CROSSINGS)
def test_the_result_that_crosses_the_budget_fails_the_task(
    build: Callable[[], TaskState], result: WorkResult
) -> None:
    state = build()

    actions = apply(state, result)

    assert kinds(actions)[-1] == "task_failed"
    assert state.error is not None and state.error.code == "budget_exceeded"


@pytest.mark.parametrize(("build", "result"), BUDGET_CROSSINGS)
def test_the_decision_that_fails_a_task_over_budget_dispatches_no_new_work(
    build: Callable[[], TaskState], result: WorkResult
) -> None:
    actions = apply(build(), result)

    assert kinds(actions)[-1] == "task_failed"
    assert dispatched(actions) == []


# --------------------------------------------------------------------------------------
# Msg ids: deterministic, and unique per stream (JetStream drops a repeated id).
# --------------------------------------------------------------------------------------


def test_start_task_decides_the_same_twice() -> None:
    one, first = decisions.start_task(TASK_ID, submit(), T0)
    two, second = decisions.start_task(TASK_ID, submit(), T0)
    assert msgspec.json.encode(first) == msgspec.json.encode(second)
    assert encoded(one) == encoded(two)


@pytest.mark.parametrize(
    ("build", "decide"),
    [
        pytest.param(started, lambda s: apply(s, plan_result(diamond())), id="plan"),
        pytest.param(
            lambda: state_with_done(diamond(), "a"), lambda s: apply(s, step_result("c")),
            id="step",
        ),
        pytest.param(
            lambda: state_with_done(chain(), "a"), lambda s: apply(s, step_result("b")),
            id="last step",
        ),
        pytest.param(
            state_at_critique, lambda s: apply(s, critique_result(critique(0.2))), id="replan"
        ),
        pytest.param(
            state_at_critique, lambda s: apply(s, critique_result(critique(0.9))), id="complete"
        ),
        pytest.param(
            lambda: state_with_done(chain(), "a"), lambda s: apply(s, paused("b")), id="pause"
        ),
        pytest.param(
            paused_on_b, lambda s: decisions.resolve_approval(s, KEY, decision(True), LATER),
            id="resolve",
        ),
        pytest.param(
            paused_on_b, lambda s: decisions.check_timers(s, LATER + 61), id="approval timer"
        ),
        pytest.param(
            started, lambda s: decisions.check_timers(s, PAST_DEADLINE), id="deadline timer"
        ),
        pytest.param(started, lambda s: decisions.cancel(s, "alice", "", LATER), id="cancel"),
    ],
)
def test_the_same_input_on_two_copies_of_a_state_decides_the_same(
    build: Callable[[], TaskState], decide: Callable[[TaskState], list[Action]]
) -> None:
    state = build()
    one, two = clone(state), clone(state)

    first, second = decide(one), decide(two)

    assert first
    assert msgspec.json.encode(first) == msgspec.json.encode(second)
    assert encoded(one) == encoded(two)


def whole_task(p: Plan) -> list[Action]:
    """Every action of a task: round 1 with `p`, its last step paused and resumed, judged
    below the bar; round 2 with `p` again, accepted."""
    state, actions = decisions.start_task(TASK_ID, submit(max_rounds=2), T0)
    last = p.steps[-1].id
    for n, score in ((1, 0.3), (2, 0.9)):
        actions += acted(apply(state, plan_result(p, round=n)))
        for s in p.steps[:-1]:
            actions += acted(apply(state, step_result(s.id, round=n)))
        call_key = f"{TASK_ID}.{n}.{last}.call.0"
        actions += acted(apply(state, paused(last, call_key, round=n)))
        actions += acted(decisions.resolve_approval(state, call_key, decision(True), LATER))
        actions += acted(apply(state, step_result(last, round=n)))
        actions += acted(apply(state, critique_result(critique(score), round=n)))
    assert state.status == "completed"
    return actions


def repeated_ids(actions: list[Action]) -> dict[str, list[str]]:
    """Msg ids used twice, per stream: work (dispatches) and events (emits)."""
    streams = {
        "work": [a.msg_id for a in actions if isinstance(a, Dispatch)],
        "events": [a.msg_id for a in actions if isinstance(a, Emit)],
    }
    return {
        name: [i for i, n in Counter(ids).items() if n > 1] for name, ids in streams.items()
    }


def test_every_publication_of_a_task_has_its_own_msg_id() -> None:
    actions = whole_task(diamond())

    assert len(actions) == 37  # 2 to start, 18 in round 1, 17 in round 2
    assert repeated_ids(actions) == {"work": [], "events": []}


@pytest.mark.parametrize("step_id", ["plan", "critique"])
def test_a_plan_step_may_not_take_the_planners_or_the_critics_id(step_id: str) -> None:
    """Their msg ids and spans are keyed by these ids: a step sharing one would be dropped
    by JetStream as a duplicate of the planner's or the critic's work."""
    with pytest.raises(ValueError, match="reserved"):
        plan(step("a"), step(step_id, "a"))
