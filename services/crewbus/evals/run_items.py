"""From a dataset item to a task, and from the finished task to a run item and the
Observation its scorers look at. Pure: no bus, so each rule is tested alone."""

from __future__ import annotations

from typing import Any

import msgspec

from crewbus.evals.experiments import item_key
from crewbus.evals.scorers.base import Observation
from crewbus.tracing.context import trace_id_of
from crewbus_contracts import StepState, SubmitTask, TaskLimits, TaskState
from crewbus_contracts.base import AgentRole
from crewbus_contracts.evals import (
    EPOCH_KEY,
    EXPERIMENT_KEY,
    ITEM_ID_MAX,
    ITEM_KEY,
    DatasetItem,
    ExperimentConfig,
    RunItem,
    Score,
    ScoreType,
    Target,
    ToolCallRecord,
)
from crewbus_contracts.replay import SOURCE_TASK_KEY, ReplayOptions
from crewbus_contracts.traces import Span

NOT_FINISHED = "not_finished"
"""A run item whose task did not end while the runner followed it: a resumed run follows
it again (the only stored run item that is ever replaced)."""
CREW_JUDGED_ROLE: AgentRole = "executor"
"""Whose prompt a crew experiment's scores are attributed to: the executor writes the answer."""


def idempotency_key(experiment: str, item_id: str, epoch: int) -> str:
    """One task per (experiment, item, epoch), however often the run is resumed."""
    return f"eval:{experiment}:{item_key(item_id)}:{epoch}"


def submission(experiment: str, config: ExperimentConfig, item: DatasetItem,
               epoch: int, replay: ReplayOptions | None = None) -> SubmitTask:
    """The task that runs `item` in `epoch`, marked as evaluation traffic in its metadata;
    with `replay`, as a replay of the item's source task (`source_task_id`, else its id).
    Raises ValueError / msgspec.ValidationError for an item no task can be made of."""
    metadata = {**item.input.metadata, EXPERIMENT_KEY: experiment,
                ITEM_KEY: item.id[:ITEM_ID_MAX], EPOCH_KEY: str(epoch)}
    if replay is not None:
        source = item.source_task_id or item.id
        replay = msgspec.structs.replace(replay, source_task_id=source)
        metadata[SOURCE_TASK_KEY] = source
    task = SubmitTask(
        text=item.input.text,
        idempotency_key=idempotency_key(experiment, item.id, epoch),
        limits=item.input.limits or config.limits or TaskLimits(),
        metadata=metadata,
        target=None if config.target == "crew" else config.target,
        variant=config.variant,
        replay=replay,
    )
    # Built as a Struct, the bounds of its fields are not checked yet: the gateway would.
    return msgspec.convert(msgspec.to_builtins(task), SubmitTask)


def judged_role(target: Target) -> AgentRole:
    return CREW_JUDGED_ROLE if target == "crew" else target


def _steps(state: TaskState) -> list[StepState]:
    return [s for r in state.rounds for s in (r.planner, *r.steps.values(), r.critic)]


def roles_used(state: TaskState) -> tuple[dict[str, str], dict[str, str]]:
    """(role -> prompt version, role -> model) of every agent that answered, last one wins."""
    prompts, models = {}, {}
    for step in _steps(state):
        if step.prompt_version:
            prompts[step.role] = step.prompt_version
        if step.model:
            models[step.role] = step.model
    return prompts, models


def structured_output(state: TaskState) -> Any:
    """A single-agent task's output as JSON values: the plan, the step output, the critique."""
    if state.target is None or not state.rounds:
        return None
    round_ = state.rounds[0]
    match state.target:
        case "planner":
            value: Any = round_.plan
        case "critic":
            value = round_.critique
        case _:
            step = next(iter(round_.steps.values()), None)
            value = (None if step is None or step.output is None
                     else {"content": step.output, "sources": step.sources})
    return msgspec.to_builtins(value)


def critic_score(state: TaskState) -> float | None:
    """The critic's score of the answer: the result's for a finished crew task (its best
    round), the critique of a critic-only task, else the last critique seen, if any."""
    if state.target not in (None, "critic"):
        return None
    if state.result is not None and state.status == "completed":
        return state.result.score
    judged = [r.critique.score for r in state.rounds if r.critique is not None]
    return judged[-1] if judged else None


def run_item_of(experiment: str, item: DatasetItem, epoch: int, state: TaskState,
                started_at: float, finished_at: float) -> RunItem:
    """What the finished task did, for the item in `epoch` (scores are added after)."""
    prompts, models = roles_used(state)
    assert state.is_final, state.status
    return RunItem(
        experiment=experiment, item_id=item.id, epoch=epoch,
        status=state.status,  # type: ignore[arg-type]  # final: completed|failed|cancelled
        task_id=state.task_id, trace_id=trace_id_of(state),
        answer=state.result.answer if state.result else "",
        output=structured_output(state),
        cost_usd=None if state.unpriced_calls else state.spent_usd,
        tokens=state.spent_tokens,
        latency_s=max(0.0, state.updated_at - state.created_at),
        rounds=len(state.rounds),
        critic_score=critic_score(state),
        prompt_versions=prompts, models=models,
        error_code=state.error.code if state.error else None,
        error_message=state.error.message if state.error else None,
        started_at=started_at, finished_at=finished_at,
    )


def error_item(experiment: str, item: DatasetItem, epoch: int, code: str, message: str,
               task_id: str = "", started_at: float = 0.0,
               finished_at: float = 0.0) -> RunItem:
    """A run item for an item that could not be run to its end (never a pass)."""
    return RunItem(experiment=experiment, item_id=item.id, epoch=epoch, status="error",
                   task_id=task_id, cost_usd=None, error_code=code, error_message=message,
                   started_at=started_at, finished_at=finished_at)


def observation_of(item: DatasetItem, run: RunItem, state: TaskState | None) -> Observation:
    return Observation(
        item=item, status=run.status, answer=run.answer, output=run.output, state=state,
        tool_calls=list(run.tool_calls), cost_usd=run.cost_usd, tokens=run.tokens,
        latency_s=run.latency_s, rounds=run.rounds, critic_score=run.critic_score,
        error_code=run.error_code,
    )


def tool_calls_of(spans: list[Span]) -> list[ToolCallRecord]:
    """The tool calls in a task's trace (`execute_tool` spans), in the order they ended."""
    tools = sorted((s for s in spans if s.kind == "tool"), key=lambda s: s.end)
    return [ToolCallRecord(name=str(s.attributes.get("gen_ai.tool.name")
                                    or s.name.removeprefix("execute_tool ")),
                           ok=s.status == "ok", step_id=s.step_id or "")
            for s in tools]


def passed(run: RunItem) -> bool:
    """Every score of the item passed (and it has one), and its task completed."""
    return run.status == "completed" and bool(run.scores) and all(
        s.passed is True and s.error is None for s in run.scores)


def evaluation_cost(scores: list[Score]) -> tuple[int, float | None]:
    """Tokens and USD the scores' model calls cost (the judge's): the run item's
    `eval_tokens` and `eval_cost_usd`. USD is None when any call had no price."""
    tokens, cost_usd = 0, 0.0
    unpriced = False
    for score in scores:
        if score.usage is None:
            continue
        tokens += score.usage.tokens
        if score.usage.cost_usd is None:
            unpriced = True
        else:
            cost_usd += score.usage.cost_usd
    return tokens, None if unpriced else cost_usd


def set_scores(run: RunItem, scores: list[Score]) -> None:
    """Give `run` its scores and what making them cost (its `eval_*` fields)."""
    run.scores = scores
    run.eval_tokens, run.eval_cost_usd = evaluation_cost(scores)


def scorer_error(name: str, type_: ScoreType, version: str, exc: BaseException) -> Score:
    """The Score of a scorer that raised: an evaluation error, never a pass."""
    return Score(name=name, type=type_, scorer_version=version,
                 passed=False, error=f"the scorer raised {type(exc).__name__}: {exc}")
