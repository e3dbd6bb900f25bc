"""The shadow run, inside the orchestrator: live tasks sampled by a hash of their id get a
twin under the candidate variant, run under the replay rules (mode `shadow`), and both
sides' outcomes accumulate, scored, in the shadow's pair of experiments.

- **Sampling is deterministic**: a task is sampled when the first 8 bytes of SHA-256 of
  its id, read as a big-endian integer, divided by 2**64, are below the sample rate. The
  same task is sampled by every replica, on every redelivery, in every run at that rate;
  only tasks created while the shadow is active, that are production tasks (not a
  replay, a shadow or an evaluation's), of the whole crew, and whose metadata matches
  the filter, are candidates.
- **Invisible to the client**: the twin is its own task (id from `shadow:<name>:<task
  id>`), with its own events subject; the production task's state and events are not
  touched. Its tools never have side effects and it never asks for approval (the agents
  enforce the replay rules); read-only tools run live as configured, since nothing of
  the production task is recorded yet while both run.
- **Its own budget**: each shadow task's spend is added to the shadow's when it ends;
  crossing `budget_usd` stops the shadow (status `budget_exceeded`), never production.
  Each twin's own `max_cost_usd` is at most what is left of it.
- **The configuration is watched**, not read per task: with no shadow active, a task
  start reads nothing; the replica keeps the production tasks it started over the last
  `SKIPPED_KEPT_S` and, when the watch brings a start, gives the ones the new shadow wants
  their twins then (so a shadow starts exactly at its `started_at`, even for tasks whose
  start came before the watch's update). With one active, every task start still reads
  the stored configuration, so a stop (or the budget) takes effect exactly, on every
  replica. Until its watch has delivered the stored configuration, a replica reads it; a
  quiet watch is checked against a read every `WATCH_CHECK_S`.
- Recording a pair's run items happens off the decision path, when each side ends (the
  first writer of a run item wins, so the order does not matter). A crash between a
  task's end and its recording loses that run item: the pair is then missing from the
  comparison (it says so), not wrong.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec
import nats.errors
from anyio.abc import TaskStatus
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from crewbus.bus.codec import encode
from crewbus.bus.kv_open import open_bucket
from crewbus.bus.kv_watch import KeyWatch
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.run_items import submission
from crewbus.evals.scorers.base import Scorer
from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.registry import build_scorers
from crewbus.ids import task_id_for
from crewbus.llm.settings import LLMSettings
from crewbus.replay.pairs import item_of, pair_configs, scored_run_item
from crewbus.replay.selection import is_production
from crewbus.taskstore import TaskStore
from crewbus.telemetry import metrics
from crewbus_contracts import TaskState, subjects
from crewbus_contracts.evals import EXPERIMENT_KEY, ScorerSpec
from crewbus_contracts.replay import ReplayOptions
from crewbus_contracts.shadow import SHADOW_KEY, ShadowConfig, baseline_name

log = logging.getLogger(__name__)

_config = msgspec.json.Decoder(ShadowConfig)
_encoder = msgspec.json.Encoder()
MAX_UPDATE_ATTEMPTS = 50
FINISHED_BACKLOG = 1000
"""Finished tasks waiting to be recorded; beyond it a task's recording is dropped (logged)."""
SKIPPED_KEPT_S = 60.0
"""How long a replica keeps a production task it started while no shadow was active, for
a shadow whose start its watch has not brought yet (it comes in milliseconds)."""
SKIPPED_KEPT = 20_000
WATCH_RETRY_S = 1.0
WATCH_CHECK_S = 5.0
METADATA_KEPT = 28
"""A twin keeps this many of the production task's metadata entries, leaving room for the
four crewbus adds (experiment, item, epoch, source task) within a task's 32."""


def sample_point(task_id: str) -> float:
    """Where `task_id` falls in [0, 1): the first 8 bytes of its SHA-256 over 2**64."""
    digest = hashlib.sha256(task_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sampled(task_id: str, rate: float) -> bool:
    return sample_point(task_id) < rate


def shadow_key(name: str, task_id: str) -> str:
    """The idempotency key of `task_id`'s twin in shadow `name`: one twin per task."""
    return f"shadow:{name}:{task_id}"


def shadow_task_id(name: str, task_id: str) -> str:
    return task_id_for(shadow_key(name, task_id))


class ShadowStore:
    """The shadow configuration in `SHADOW_KV`, updated with revision checks."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> ShadowStore:
        # Consistent: read for every task started and ended, it must show a stop at once.
        return cls(await open_bucket(js, subjects.SHADOW_KV, consistent=True))

    async def get(self) -> tuple[ShadowConfig, int] | None:
        try:
            entry = await self.kv.get(SHADOW_KEY)
        except KeyNotFoundError:
            return None
        if not entry.value or entry.revision is None:
            return None
        return _config.decode(entry.value), entry.revision

    async def put(self, config: ShadowConfig) -> None:
        await self.kv.put(SHADOW_KEY, _encoder.encode(config))

    async def update(self, change: Callable[[ShadowConfig], bool]) -> ShadowConfig | None:
        """Apply `change` (it returns False to leave the config as it is); again on a fresh
        read when another writer won. None without a shadow."""
        for _ in range(MAX_UPDATE_ATTEMPTS):
            found = await self.get()
            if found is None:
                return None
            config, revision = found
            if not change(config):
                return config
            try:
                await self.kv.update(SHADOW_KEY, _encoder.encode(config), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return config
        raise RuntimeError("the shadow configuration kept changing under this update")


def wants(config: ShadowConfig, state: TaskState) -> bool:
    """Whether `state`, a task just started, gets a twin (see the module's rules)."""
    return (config.status == "active" and state.created_at >= config.started_at
            and state.target is None and is_production(state)
            and all(state.metadata.get(k) == v for k, v in config.metadata_filter.items())
            and sampled(state.task_id, config.sample_rate))


def twin_of(state: TaskState, config: ShadowConfig) -> tuple[str, bytes]:
    """The twin's task id and its encoded submission (the SubmitTask a gateway would
    store): the production task's text, limits and metadata under the candidate variant,
    as a run item of the shadow's experiment, within what is left of its budget."""
    _, candidate = pair_configs(config.variant, config.scorers, "shadow")
    item = item_of(state)
    metadata = dict(list(item.input.metadata.items())[:METADATA_KEPT])
    limits = state.limits
    if config.budget_usd is not None:
        left = max(config.budget_usd - config.spent_usd, 1e-9)
        limit = min(left, limits.max_cost_usd or left)
        limits = msgspec.structs.replace(limits, max_cost_usd=limit)
    item = msgspec.structs.replace(
        item, input=msgspec.structs.replace(item.input, limits=limits, metadata=metadata))
    options = ReplayOptions(source_task_id=state.task_id, mode="shadow",
                            live_tools=config.live_tools, live_memory=config.live_memory)
    task = submission(config.name, candidate, item, 0, options)
    task = msgspec.structs.replace(task, idempotency_key=shadow_key(config.name, state.task_id))
    return task_id_for(task.idempotency_key), encode(task)


class Shadow:
    """The orchestrator's part of the shadow: it starts twins of sampled tasks and
    records both sides as they end."""

    def __init__(self, js: JetStreamContext, tasks: TaskStore, judge: LLMSettings) -> None:
        self.js = js
        self.tasks = tasks
        self.judge = judge
        self._store: ShadowStore | None = None
        self._experiments: ExperimentStore | None = None
        self._scorers: dict[str, list[Scorer]] = {}
        self._context: ScorerContext | None = None
        self._send, self._receive = anyio.create_memory_object_stream[TaskState](
            FINISHED_BACKLOG)
        self._watched: ShadowConfig | None = None
        self._watching = False
        """The watch has delivered the stored configuration: `_watched` is it."""
        self._skipped: OrderedDict[str, TaskState] = OrderedDict()
        """Production tasks started while no shadow was active, oldest first."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch the configuration and record finished tasks until cancelled."""
        self._store = await ShadowStore.open(self.js)
        self._experiments = await ExperimentStore.open(self.js)
        async with ScorerContext(base_dir=Path.cwd(), judge=self.judge) as context, \
                anyio.create_task_group() as tg:
            self._context = context
            tg.start_soon(self._watch)
            task_status.started()
            await self._record_finished()

    async def _watch(self) -> None:
        """Keep `_watched` as stored; on a failure, read per task until watching again.
        A quiet watch is checked against a read every `WATCH_CHECK_S`, so one that stopped
        delivering (a lost subscription) misses a start for no longer than that."""
        assert self._store is not None
        while True:
            try:
                watcher = await KeyWatch.start(self._store.kv, SHADOW_KEY)
                try:
                    while True:
                        try:
                            entry = await watcher.updates(timeout=WATCH_CHECK_S)
                        except nats.errors.TimeoutError:
                            if self._watching:
                                found = await self._store.get()
                                await self._seen(found[0] if found else None)
                            continue
                        if entry is None:  # the stored value (if any) is delivered
                            self._watching = True
                            await self._seen(self._watched)
                        else:
                            await self._seen(_config.decode(entry.value) if entry.value
                                             else None)
                finally:
                    self._watching = False
                    await watcher.stop()
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                log.warning("shadow configuration watch failed, reading it per task: %s", exc)
            await anyio.sleep(WATCH_RETRY_S)

    async def _seen(self, config: ShadowConfig | None) -> None:
        self._watched = config
        if self._watching:
            await self._catch_up()

    def _active_or_unknown(self) -> bool:
        return (not self._watching or (self._watched is not None
                and self._watched.status == "active"))

    def _skip(self, state: TaskState) -> None:
        self._skipped[state.task_id] = state
        horizon = time.time() - SKIPPED_KEPT_S
        while self._skipped and (len(self._skipped) > SKIPPED_KEPT
                                 or next(iter(self._skipped.values())).created_at < horizon):
            self._skipped.popitem(last=False)

    async def _catch_up(self) -> None:
        """A shadow just became active: twins for the tasks it wants that this replica
        started before its watch said so."""
        config = self._watched
        if config is None or config.status != "active" or not self._skipped:
            return
        skipped = [s for s in self._skipped.values() if wants(config, s)]
        self._skipped.clear()
        for state in skipped:
            await self.task_started(state)

    async def current(self) -> ShadowConfig | None:
        """The configuration as stored now: read for every task started while a shadow is
        active (or the watch has not delivered), so a shadow stops exactly at the stop (and
        its budget), on every replica."""
        assert self._store is not None
        found = await self._store.get()
        return found[0] if found else None

    @property
    def watching(self) -> bool:
        """The watch has delivered the stored configuration (and is still running)."""
        return self._watching

    async def known(self) -> ShadowConfig | None:
        """The configuration as watched, else as stored now."""
        return self._watched if self._watching else await self.current()

    async def task_started(self, state: TaskState) -> None:
        """Start the twin of a sampled task (once: its id is derived, JetStream and the
        task store drop a second one). Never raises: the shadow never stops production."""
        if self._store is None or not is_production(state) or state.target is not None:
            return
        if not self._active_or_unknown():
            self._skip(state)
            return
        try:
            config = await self.current()
            if config is None or not wants(config, state):
                return
            task_id, data = twin_of(state, config)
            if await self.tasks.get(task_id) is not None:
                return
            await self.js.publish(subjects.task(task_id), data, stream=subjects.TASKS_STREAM,
                                  headers={"Nats-Msg-Id": task_id})
            metrics.record_shadow("started")

            def count(shadow: ShadowConfig) -> bool:
                shadow.shadow_tasks += 1
                return shadow.name == config.name

            await self._store.update(count)
        except Exception as exc:
            log.warning("shadow of %s not started: %s", state.task_id, exc)

    def task_finished(self, state: TaskState) -> None:
        """Queue a finished task for recording (off the decision path)."""
        try:
            self._send.send_nowait(state)
        except anyio.WouldBlock:
            log.warning("shadow recording backlog full: %s not recorded", state.task_id)

    async def _record_finished(self) -> None:
        async for state in self._receive:
            try:
                await self.record(state)
            except Exception as exc:
                log.warning("shadow run item of %s not recorded: %s", state.task_id, exc)

    async def record(self, state: TaskState) -> None:
        """Store the run items a finished task completes: a twin's (and its production
        task's, when that has ended), or a production task's whose twin exists."""
        if state.replay is not None and state.replay.mode == "shadow":
            name = state.metadata.get(EXPERIMENT_KEY, "")
            await self._record(name, state.replay.source_task_id, state, candidate=True)
            found = await self.tasks.get(state.replay.source_task_id)
            if found is not None and found[0].is_final:
                await self._record(name, found[0].task_id, found[0], candidate=False)
            await self.count_spend(name, state.spent_usd)
        elif is_production(state) and (config := await self.known()) is not None:
            name = config.name
            if await self.tasks.get(shadow_task_id(name, state.task_id)) is not None:
                await self._record(name, state.task_id, state, candidate=False)

    async def _record(self, name: str, source_task_id: str, state: TaskState,
                      candidate: bool) -> None:
        assert self._experiments is not None
        experiment = name if candidate else baseline_name(name)
        header = await self._experiments.get(experiment)
        if header is None:
            log.warning("shadow experiment %s is gone: %s not recorded", experiment,
                        state.task_id)
            return
        source = state if not candidate else None
        if source is None:
            found = await self.tasks.get(source_task_id)
            source = found[0] if found else state
        item = item_of(source)
        run = await scored_run_item(self.js, experiment, item, state,
                                    self._scorers_of(experiment, header.config.scorers))
        if await self._experiments.put_item(run):
            metrics.record_shadow("recorded")

    def _scorers_of(self, experiment: str, specs: list[ScorerSpec]) -> list[Scorer]:
        if experiment not in self._scorers:
            assert self._context is not None
            self._scorers[experiment] = list(build_scorers(specs, self._context))
        return self._scorers[experiment]

    async def count_spend(self, name: str, usd: float) -> None:
        """Count a twin's spend; crossing the budget stops the shadow."""
        assert self._store is not None

        def add(config: ShadowConfig) -> bool:
            if config.name != name:
                return False
            config.spent_usd += usd
            if (config.status == "active" and config.budget_usd is not None
                    and config.spent_usd >= config.budget_usd):
                config.status, config.stopped_at = "budget_exceeded", time.time()
                config.reason = (f"the shadow spent ${config.spent_usd:.4f} of its "
                                 f"${config.budget_usd:g} budget")
                metrics.record_shadow("budget_exceeded")
            return True

        await self._store.update(add)
