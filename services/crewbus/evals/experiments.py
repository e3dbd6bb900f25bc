"""Experiments and their run items in JetStream KV (`crewbus_experiments`).

An experiment's header is the key `<name>` (an Experiment); each run item is the key
`<name>.items.<key>.<epoch>` (a RunItem), where `<key>` is a short hash of the item id,
since an id may hold characters KV keys refuse (the RunItem keeps the id itself). A run
item is written once: a resumed run skips what is stored, so nothing is scored twice.
The header is updated with revision checks, so two writers never lose each other's change.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import anyio
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from crewbus.bus.kv_keys import bucket_values
from crewbus_contracts import subjects
from crewbus_contracts.evals import Experiment, ExperimentConfig, ExperimentSummary, RunItem

_experiment = msgspec.json.Decoder(Experiment)
_run_item = msgspec.json.Decoder(RunItem)
_encoder = msgspec.json.Encoder()

IDENTITY_FIELDS = ("dataset", "dataset_version", "scorers", "epochs", "target", "variant",
                   "limits")
"""What makes two runs the same experiment. A resumed run may change only the rest
(concurrency, thresholds): they change how it runs or is gated, not what it measures."""
MAX_UPDATE_ATTEMPTS = 50
READ_TIMEOUT_S = 60.0
"""A listing that has not reached the end of the bucket by then is an error, not a hang."""


class ExperimentError(Exception):
    """Base of the experiment store's errors."""


class ExperimentNotFoundError(ExperimentError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no experiment {name!r} (see `crewbus eval list`)")
        self.name = name


class ExperimentMismatchError(ExperimentError):
    """An experiment of that name exists with another configuration: resuming it would
    mix two experiments' results."""

    def __init__(self, name: str, differences: list[str]) -> None:
        super().__init__(
            f"experiment {name!r} already exists with a different configuration "
            f"({'; '.join(differences)}): resume it with the same settings or pick another "
            "--name")
        self.name = name
        self.differences = differences


def item_key(item_id: str) -> str:
    """A KV-safe key for an item id, stable across runs."""
    return hashlib.sha256(item_id.encode()).hexdigest()[:20]


def run_item_key(experiment: str, item_id: str, epoch: int) -> str:
    return f"{experiment}.items.{item_key(item_id)}.{epoch}"


def differences(stored: ExperimentConfig, wanted: ExperimentConfig) -> list[str]:
    """The identity fields where `wanted` differs from `stored`, as `field: old -> new`."""
    found = []
    for name in IDENTITY_FIELDS:
        old, new = getattr(stored, name), getattr(wanted, name)
        if msgspec.to_builtins(old) != msgspec.to_builtins(new):
            found.append(f"{name}: {_short(old)} -> {_short(new)}")
    return found


def _short(value: object) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


class ExperimentStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, patience_s: float = 0.0) -> ExperimentStore:
        """The store; with `patience_s`, waits that long for the services to create its
        bucket (right after `crewbus up` they may still be starting)."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return cls(await js.key_value(subjects.EXPERIMENTS_KV))
            except (BucketNotFoundError, NotFoundError):
                if time.monotonic() >= deadline:
                    raise
            await anyio.sleep(0.25)

    async def start(self, name: str, config: ExperimentConfig) -> tuple[Experiment, bool]:
        """The experiment `name`, created with `config` if new; (experiment, resumed).

        An existing one must have the same identity (`IDENTITY_FIELDS`), else
        ExperimentMismatchError; resuming takes the new concurrency and thresholds and
        marks it running again."""
        now = time.time()
        fresh = Experiment(name=name, config=config, created_at=now, updated_at=now)
        try:
            await self.kv.create(name, _encoder.encode(fresh))
            return fresh, False
        except KeyWrongLastSequenceError:
            pass
        found = await self.get(name)
        assert found is not None
        if diff := differences(found.config, config):
            raise ExperimentMismatchError(name, diff)

        def resume(experiment: Experiment) -> None:
            experiment.config.concurrency = config.concurrency
            experiment.config.thresholds = config.thresholds
            experiment.status = "running"
            experiment.updated_at = time.time()

        return await self.update(name, resume), True

    async def get(self, name: str) -> Experiment | None:
        found = await self._get(name)
        return found[0] if found else None

    async def require(self, name: str) -> Experiment:
        found = await self.get(name)
        if found is None:
            raise ExperimentNotFoundError(name)
        return found

    async def _get(self, name: str) -> tuple[Experiment, int] | None:
        try:
            entry = await self.kv.get(name)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return _experiment.decode(entry.value), entry.revision

    async def update(self, name: str, change: Callable[[Experiment], None]) -> Experiment:
        """Apply `change` to the stored header, again on a fresh read if another writer won."""
        for _ in range(MAX_UPDATE_ATTEMPTS):
            found = await self._get(name)
            if found is None:
                raise ExperimentNotFoundError(name)
            experiment, revision = found
            change(experiment)
            try:
                await self.kv.update(name, _encoder.encode(experiment), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return experiment
        raise ExperimentError(f"experiment {name!r} kept changing under this update")

    async def finish(
        self, name: str, summary: ExperimentSummary,
        prompt_versions: dict[str, str], models: dict[str, str],
    ) -> Experiment:
        """Record the summary and what the roles answered with; status `finished`."""

        def done(experiment: Experiment) -> None:
            now = time.time()
            experiment.summary = summary
            experiment.config.prompt_versions = prompt_versions
            experiment.config.models = models
            experiment.status = "finished"
            experiment.finished_at = experiment.updated_at = now

        return await self.update(name, done)

    async def interrupted(self, name: str) -> None:
        def stop(experiment: Experiment) -> None:
            if experiment.status == "running":
                experiment.status = "interrupted"
                experiment.updated_at = time.time()

        await self.update(name, stop)

    async def all(self) -> list[Experiment]:
        """Every experiment header, oldest first (run items are not read)."""
        found = [_experiment.decode(value)
                 for value in (await bucket_values(self.kv, "*", READ_TIMEOUT_S)).values()]
        return sorted(found, key=lambda e: e.created_at)

    async def put_item(self, item: RunItem, replace: bool = False) -> bool:
        """Store a run item; False when one is stored for its (item, epoch) already (and
        `replace` is off: only an unfinished follow-up is replaced)."""
        key = run_item_key(item.experiment, item.item_id, item.epoch)
        data = _encoder.encode(item)
        if replace:
            await self.kv.put(key, data)
            return True
        try:
            await self.kv.create(key, data)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def items(self, name: str) -> list[RunItem]:
        """Every stored run item of `name`, ordered by item id and epoch."""
        found = [_run_item.decode(value) for value in
                 (await bucket_values(self.kv, f"{name}.items.>", READ_TIMEOUT_S)).values()]
        return sorted(found, key=lambda r: (r.item_id, r.epoch))

