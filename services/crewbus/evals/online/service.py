"""`crewbus serve evaluator`: score finished production tasks as they end.

One durable consumer (`EVALUATOR_CONSUMER`) on the terminal events, shared by every
replica, through the common pull worker: a task's end is acked only once each evaluator
that selects it (`sampling.selects`) has its scores stored in `TASK_SCORES_KV`, and the
failing task is in its dataset. A replica killed mid-batch leaves its messages unacked;
they are redelivered, and each score is written with KV create under a key per (task,
evaluator, scorer, scorer version), so what was stored before the kill is read back, not
scored again: nothing is lost, nothing is stored twice.

After a score is stored (never before): an `evaluation` span in the task's trace with one
`gen_ai.evaluation.result` event per new score, and `crewbus_eval_score`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from crewbus.bus.worker import RetryLater, WorkerSpec, decode_or_reject, run_pull_worker
from crewbus.evals.datasets import (
    DatasetExists,
    DatasetNotFound,
    DatasetStore,
    ItemsAlreadyInDataset,
)
from crewbus.evals.online.config import OnlineEvaluator
from crewbus.evals.online.sampling import selects
from crewbus.evals.online.scores import TaskScoreStore, record_metric, score_key, task_score
from crewbus.evals.online.settings import EvaluatorSettings
from crewbus.evals.publish import evaluation_event
from crewbus.evals.run_items import observation_of, run_item_of, tool_calls_of
from crewbus.evals.runner import needs_tool_calls, score_all
from crewbus.evals.scorers.base import Scorer
from crewbus.evals.task_items import item_from_task
from crewbus.taskstore import TaskStore
from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing import SpanDraft, Tracer, read_trace, task_context, task_trace_id
from crewbus_contracts import TaskState, TerminalEvent, subjects
from crewbus_contracts.evals import DatasetItem
from crewbus_contracts.feedback import TaskScore

log = logging.getLogger(__name__)

ONLINE = "online"
"""The experiment name run items of production tasks are built under (never stored)."""
_decoder: msgspec.json.Decoder[TerminalEvent] = msgspec.json.Decoder(TerminalEvent)


@dataclass(frozen=True)
class BuiltEvaluator:
    """An evaluator with its scorers built, and the dataset its failures go to."""

    config: OnlineEvaluator
    scorers: Sequence[Scorer]
    add_to: tuple[str, ...] = ()


def failing(score: TaskScore) -> bool:
    """A score that judged the task and found it wanting. A scorer that could not judge
    (`error`: the judge was down) is not the task's failure: it adds nothing to a dataset."""
    return score.score.passed is False and score.score.error is None


class OnlineEvaluation:
    def __init__(self, js: JetStreamContext, evaluators: Sequence[BuiltEvaluator],
                 tasks: TaskStore, scores: TaskScoreStore, datasets: DatasetStore,
                 tracer: Tracer | None = None) -> None:
        self.js = js
        self.evaluators = evaluators
        self.tasks = tasks
        self.scores = scores
        self.datasets = datasets
        self.tracer = tracer

    async def handle(self, msg: Msg) -> None:
        event = decode_or_reject(msg, _decoder)
        found = await self.tasks.get(event.task_id)
        if found is None or not found[0].is_final:
            # The state is saved before its end is published: this is a lagging read.
            raise RetryLater(f"task {event.task_id} has no final state yet")
        for evaluator in self.evaluators:
            if selects(evaluator.config, found[0]):
                await self.evaluate(evaluator, found[0])

    async def evaluate(self, evaluator: BuiltEvaluator, state: TaskState) -> list[TaskScore]:
        """Every score of `evaluator` for the task, stored (those stored already are read
        back, not scored again); then the task joins the datasets if one fails."""
        started = time.time()
        name = evaluator.config.name
        stored: list[TaskScore] = []
        todo: list[tuple[Scorer, str]] = []
        item = item_from_task(state)
        for scorer in evaluator.scorers:
            if not scorer.applies_to(item):
                continue
            key = score_key(state.task_id, name, scorer.name, scorer.version)
            existing = await self.scores.get(key)
            if existing is None:
                todo.append((scorer, key))
            else:
                stored.append(existing)
        new = await self._score(name, state, item, todo) if todo else []
        stored += new
        if new:
            for score in new:
                record_metric(score)
            await self._write_span(name, state, new, started)
        if evaluator.add_to and any(failing(s) for s in stored):
            for dataset in evaluator.add_to:
                await self._add_to_dataset(dataset, state, item, name, stored)
        return stored

    async def _score(self, name: str, state: TaskState, item: DatasetItem,
                     todo: list[tuple[Scorer, str]]) -> list[TaskScore]:
        run = run_item_of(ONLINE, item, 0, state, state.created_at, state.updated_at)
        scorers = [scorer for scorer, _ in todo]
        if needs_tool_calls(scorers):
            run.tool_calls = tool_calls_of(await read_trace(self.js, state.task_id))
        observation = observation_of(item, run, state)
        new = []
        for (_, key), score in zip(todo, await score_all(scorers, observation),
                                        strict=True):
            record = task_score(state, score, evaluator=name)
            if await self.scores.create(key, record):
                new.append(record)
            else:  # another replica stored it meanwhile: theirs is the score
                log.info("%s: %s was scored by another replica", name, key)
        return new

    async def _add_to_dataset(self, dataset: str, state: TaskState, task_item: DatasetItem,
                              evaluator: str, stored: list[TaskScore]) -> None:
        """The task as an item of `dataset` (id: the task id, so a redelivery adds it
        once), with its trace link and the scores that failed."""
        failed = sorted(s.score.name for s in stored if failing(s))
        item = msgspec.structs.replace(task_item, metadata={
            **task_item.metadata, "evaluator": evaluator, "failed_scores": failed})
        note = f"online evaluator {evaluator}: task {state.task_id} failed {', '.join(failed)}"
        try:
            await self.datasets.append(dataset, [item], note=note)
        except ItemsAlreadyInDataset:
            return
        except DatasetNotFound:
            try:
                await self.datasets.create(dataset, [item], note=note,
                                           description="failing production tasks")
            except DatasetExists:  # another replica created it meanwhile
                await self._add_to_dataset(dataset, state, task_item, evaluator, stored)

    async def _write_span(self, name: str, state: TaskState, new: list[TaskScore],
                          started: float) -> None:
        if self.tracer is None:
            return
        ended = time.time()
        seed = "online:" + ",".join(sorted(score_key(state.task_id, name, s.score.name,
                                                     s.score.scorer_version) for s in new))
        context = TraceContext(task_trace_id(state.task_id),
                               hashlib.sha256(seed.encode()).hexdigest()[:16])
        errors = [s.score.name for s in new if s.score.error]
        await self.tracer.write(SpanDraft(
            name=f"evaluation {name}", kind="evaluation", task_id=state.task_id,
            context=context, parent_span_id=task_context(state.task_id).span_id,
            start=started, end=ended, status="error" if errors else "ok",
            error=f"could not score: {', '.join(errors)}" if errors else None,
            attributes={"crewbus.eval.evaluator": name, "crewbus.eval.online": True,
                        "crewbus.eval.target": state.target or "crew",
                        "crewbus.eval.variant": state.variant},
            events=[evaluation_event(s.score, ended) for s in new],
        ))


async def run_evaluator(js: JetStreamContext, evaluation: OnlineEvaluation,
                        settings: EvaluatorSettings) -> None:
    """Score finished tasks until cancelled (or the process is asked to stop)."""
    spec = WorkerSpec(
        role="evaluator",
        stream=subjects.EVENTS_STREAM,
        consumer=subjects.EVALUATOR_CONSUMER,
        dead_letter_subject=subjects.dead_letter("evaluator"),
        max_deliver=settings.max_deliver,
        heartbeat_s=settings.heartbeat_s,
        concurrency=settings.evaluator_concurrency,
    )
    await run_pull_worker(js, spec, evaluation.handle)
