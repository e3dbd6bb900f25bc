"""Task state in JetStream KV: every write names the revision it read (optimistic locking).

The orchestrator reads and writes it; the gateway and the client only read it.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from crewbus_contracts import TaskState

_decoder = msgspec.json.Decoder(TaskState)
_encoder = msgspec.json.Encoder()


class StaleStateError(Exception):
    """Someone else changed the task since it was read: read again and re-decide."""


class TaskStore:
    """Reads may come from a small cache of this replica's own writes (`cached=True`);
    a write always names the revision it read, so a stale cached read can never be
    saved: it fails with StaleStateError and the caller reads again from the bucket."""

    def __init__(self, kv: KeyValue, cache_size: int = 10_000) -> None:
        self.kv = kv
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[bytes, int]] = OrderedDict()

    async def get(self, task_id: str, cached: bool = False) -> tuple[TaskState, int] | None:
        if cached and (hit := self._cache.get(task_id)) is not None:
            return _decoder.decode(hit[0]), hit[1]
        try:
            entry = await self.kv.get(task_id)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        self._remember(task_id, entry.value, entry.revision)
        return _decoder.decode(entry.value), entry.revision

    def _remember(self, task_id: str, data: bytes, revision: int) -> None:
        self._cache[task_id] = (data, revision)
        self._cache.move_to_end(task_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self, task_id: str) -> None:
        self._cache.pop(task_id, None)

    def in_cache(self, task_id: str) -> bool:
        """Whether this replica's cache holds the task (finished tasks are forgotten)."""
        return task_id in self._cache

    async def create(self, state: TaskState) -> int | None:
        """Store a new task and return its revision; None when it already exists."""
        data = _encoder.encode(state)
        try:
            revision = await self.kv.create(state.task_id, data)
        except KeyWrongLastSequenceError:
            return None
        self._remember(state.task_id, data, revision)
        return revision

    async def save(self, state: TaskState, revision: int) -> int:
        data = _encoder.encode(state)
        try:
            new_revision = await self.kv.update(state.task_id, data, last=revision)
        except KeyWrongLastSequenceError as exc:
            self.forget(state.task_id)
            raise StaleStateError(state.task_id) from exc
        self._remember(state.task_id, data, new_revision)
        return new_revision
