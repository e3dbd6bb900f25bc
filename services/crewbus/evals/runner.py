"""Run an experiment: every (item, epoch) of a dataset as a real task through the bus.

Each becomes a `SubmitTask` on `crewbus.submit`, exactly as a user's task would, with its
metadata marking the experiment, item and epoch and an idempotency key per (experiment,
item, epoch). The runner follows the task to its end, reads its state, scores it, stores
the run item, then publishes the scores (`EVALS`, and a span event in the task's trace).

Resuming is running again with the same name: stored run items are skipped; an item whose
task is still running (the last run was killed) is submitted again, the gateway answers
"duplicate", and the runner follows that same task from its first event. So no item runs
twice, and an experiment killed at any point finishes where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio
import msgspec
from nats.aio.client import Client as NATS

from crewbus.client import CrewbusClient, SubmissionRefusedError
from crewbus.evals import publish
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.run_items import (
    NOT_FINISHED,
    error_item,
    observation_of,
    passed,
    run_item_of,
    scorer_error,
    set_scores,
    submission,
    tool_calls_of,
)
from crewbus.evals.scorers.base import Observation, Scorer
from crewbus.tracing import Tracer, read_trace
from crewbus_contracts import TaskState
from crewbus_contracts.evals import (
    DatasetItem,
    Experiment,
    ExperimentConfig,
    ExperimentSummary,
    RunItem,
    Score,
    ScoreType,
    Threshold,
)
from crewbus_contracts.events import TERMINAL_EVENTS
from crewbus_contracts.replay import ReplayOptions

log = logging.getLogger(__name__)

Summarise = Callable[[list[RunItem], list[tuple[str, ScoreType]], list[Threshold], int],
                     ExperimentSummary]
"""`crewbus.evals.summary.summarise(run_items, scorers, thresholds, items_expected)`, the
scorers as (name, type)."""

SUBMIT_PATIENCE_S = 30.0
FOLLOW_GRACE_S = 60.0
"""How long past a task's own deadline the runner waits for its end (the orchestrator's
sweep fails it at the deadline; this covers a sweep that runs late)."""


@dataclass
class Progress:
    """Counts so far, for the progress line: run items stored of `total`."""

    total: int
    done: int = 0
    passing: int = 0
    errors: int = 0
    spent_usd: float = 0.0
    unpriced: int = 0
    eval_usd: float = 0.0
    """What scoring cost (the judge's calls), apart from `spent_usd`."""
    eval_unpriced: int = 0
    duplicates: list[str] = field(default_factory=list)

    def add(self, run: RunItem) -> None:
        self.done += 1
        self.passing += passed(run)
        self.errors += run.status == "error"
        if run.cost_usd is None:
            self.unpriced += run.status != "error"
        else:
            self.spent_usd += run.cost_usd
        if run.eval_cost_usd is None:
            self.eval_unpriced += 1
        else:
            self.eval_usd += run.eval_cost_usd

    def line(self) -> str:
        cost = f"${self.spent_usd:.4f}" + (f" (+{self.unpriced} unpriced)" if self.unpriced
                                           else "")
        errors = f", {self.errors} errors" if self.errors else ""
        judged = ""
        if self.eval_usd or self.eval_unpriced:
            judged = f", ${self.eval_usd:.4f} evaluating" + (
                f" (+{self.eval_unpriced} unpriced)" if self.eval_unpriced else "")
        return (f"{self.done}/{self.total} done, {self.passing} passing{errors}, "
                f"{cost} spent{judged}")


@dataclass(frozen=True)
class ExperimentRun:
    """What to run: the experiment's name and config, the pinned version's items, and the
    scorers built from the config."""

    name: str
    config: ExperimentConfig
    items: Sequence[DatasetItem]
    scorers: Sequence[Scorer]
    replay: ReplayOptions | None = None
    """Run each item as a replay of its source task (`crewbus replay`), under these rules."""


def unique_items(items: Sequence[DatasetItem]) -> tuple[list[DatasetItem], list[str]]:
    """The items with distinct ids (first wins), and the ids seen more than once: a
    duplicate runs once, and the missing run items fail the experiment."""
    seen: set[str] = set()
    unique, duplicates = [], []
    for item in items:
        if item.id in seen:
            duplicates.append(item.id)
        else:
            seen.add(item.id)
            unique.append(item)
    return unique, duplicates


def needs_tool_calls(scorers: Sequence[Scorer]) -> bool:
    """Whether any scorer looks at the trajectory (it declares `needs_tool_calls = True`);
    only then is each task's trace read."""
    return any(getattr(s, "needs_tool_calls", False) for s in scorers)


async def score_all(scorers: Sequence[Scorer], observation: Observation) -> list[Score]:
    """Every applicable scorer's Score; one that raises becomes an evaluation error."""
    scores = []
    for scorer in scorers:
        if not scorer.applies_to(observation.item):
            continue
        try:
            scores.append(await scorer.score(observation))
        except Exception as exc:
            log.warning("scorer %s failed on item %s: %r", scorer.name, observation.item.id,
                        exc)
            scores.append(scorer_error(scorer.name, scorer.type, scorer.version, exc))
    return scores


class ExperimentRunner:
    def __init__(
        self, nc: NATS, store: ExperimentStore, summarise: Summarise, *,
        tracer: Tracer | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        follow_grace_s: float = FOLLOW_GRACE_S,
    ) -> None:
        self.client = CrewbusClient(nc)
        self.js = self.client.js
        self.store = store
        self.summarise = summarise
        self.tracer = tracer
        self.on_progress = on_progress or (lambda progress: None)
        self.follow_grace_s = follow_grace_s

    async def run(self, run: ExperimentRun) -> Experiment:
        """Run what is not stored yet, then summarise every stored run item and finish the
        experiment. Raises ExperimentMismatchError when `run.name` exists with another
        configuration; an interruption leaves it `interrupted`, ready to resume."""
        config = run.config
        await self.store.start(run.name, config)
        unique, duplicates = unique_items(run.items)
        stored = {(r.item_id, r.epoch): r for r in await self.store.items(run.name)}
        wanted = [(item, epoch) for epoch in range(config.epochs) for item in unique]
        progress = Progress(total=len(wanted), duplicates=duplicates)
        pending = []
        for item, epoch in wanted:
            found = stored.get((item.id, epoch))
            if found is not None and found.error_code != NOT_FINISHED:
                progress.add(found)
            else:
                pending.append((item, epoch, found is not None))
        self.on_progress(progress)
        try:
            await self._run_pending(run, pending, progress)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.store.interrupted(run.name)
            raise
        items = [r for r in await self.store.items(run.name)
                 if r.epoch < config.epochs and r.item_id in {i.id for i in unique}]
        scorers = [(s.name, s.type) for s in run.scorers]
        summary = self.summarise(items, scorers, config.thresholds,
                                 len(run.items) * config.epochs)
        prompts, models = _roles(items)
        return await self.store.finish(run.name, summary, prompts, models)

    async def _run_pending(
        self, run: ExperimentRun, pending: list[tuple[DatasetItem, int, bool]],
        progress: Progress,
    ) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[DatasetItem, int, bool]](
            len(pending) or 1)
        for work in pending:
            send.send_nowait(work)
        send.close()

        async def worker() -> None:
            async for item, epoch, replace in receive:
                stored = await self.run_one(run, item, epoch, replace)
                progress.add(stored)
                self.on_progress(progress)

        async with receive, anyio.create_task_group() as tg:
            for _ in range(min(run.config.concurrency, len(pending))):
                tg.start_soon(worker)

    async def run_one(
        self, run: ExperimentRun, item: DatasetItem, epoch: int, replace: bool = False
    ) -> RunItem:
        """Run, score, store and publish one (item, epoch); the stored RunItem."""
        started = time.time()
        result, state = await self._task_of(run, item, epoch, started)
        if result.task_id and result.status != "error" and needs_tool_calls(run.scorers):
            result.tool_calls = tool_calls_of(await read_trace(self.js, result.task_id))
        set_scores(result, await score_all(run.scorers, observation_of(item, result, state)))
        result.finished_at = time.time()
        if not await self.store.put_item(result, replace=replace):
            return result  # another runner of the same experiment stored it first
        await publish.publish_scored(self.js, result, run.config)
        if self.tracer is not None:
            await publish.write_evaluation_span(self.tracer, result, run.config, started,
                                                result.finished_at)
        return result

    async def _task_of(
        self, run: ExperimentRun, item: DatasetItem, epoch: int, started: float
    ) -> tuple[RunItem, TaskState | None]:
        """Submit (or find again) the item's task and follow it to its end."""
        name = run.name
        try:
            task = submission(name, run.config, item, epoch, run.replay)
        except (ValueError, msgspec.ValidationError) as exc:
            return error_item(name, item, epoch, "invalid_item", str(exc), started_at=started,
                              finished_at=time.time()), None
        try:
            accepted = await self.client.submit(task, timeout_s=SUBMIT_PATIENCE_S)
        except SubmissionRefusedError as exc:
            return error_item(name, item, epoch, exc.reply.code, exc.reply.message,
                              started_at=started, finished_at=time.time()), None
        state = await self._follow(accepted.task_id,
                                   task.limits.deadline_seconds + self.follow_grace_s)
        if state is None or not state.is_final:
            message = (f"task {accepted.task_id} had not ended "
                       f"{task.limits.deadline_seconds + self.follow_grace_s:g}s after "
                       "it was followed: run the experiment again to follow it further")
            return error_item(name, item, epoch, NOT_FINISHED, message,
                              task_id=accepted.task_id, started_at=started,
                              finished_at=time.time()), state
        return run_item_of(name, item, epoch, state, started, time.time()), state

    async def _follow(self, task_id: str, patience_s: float) -> TaskState | None:
        """The task's state once it has ended (None or unfinished after `patience_s`).
        Events from the first: a resumed run finds an earlier task's end at once."""
        state = await self.client.state(task_id)
        if state is not None and state.is_final:
            return state
        with anyio.move_on_after(patience_s):
            async with contextlib.aclosing(self.client.events(task_id)) as events:
                async for event in events:
                    if isinstance(event, TERMINAL_EVENTS):
                        break
        # The state is saved before its events are published: final once the end is seen.
        return await self.client.state(task_id)


def _roles(items: list[RunItem]) -> tuple[dict[str, str], dict[str, str]]:
    """Role -> prompt version and role -> model over the run items; several seen for one
    role (a label moved mid-run) are listed together, comma-separated."""
    prompts: dict[str, set[str]] = {}
    models: dict[str, set[str]] = {}
    for run in items:
        for role, version in run.prompt_versions.items():
            prompts.setdefault(role, set()).add(version)
        for role, model in run.models.items():
            models.setdefault(role, set()).add(model)
    return ({r: ",".join(sorted(v)) for r, v in prompts.items()},
            {r: ",".join(sorted(v)) for r, v in models.items()})
