"""Task state in JetStream KV: every write names the revision it read (optimistic locking)."""

from __future__ import annotations

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from crewbus_contracts import TaskState

_decoder = msgspec.json.Decoder(TaskState)
_encoder = msgspec.json.Encoder()


class StaleStateError(Exception):
    """Someone else changed the task since it was read: read again and re-decide."""


class TaskStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, task_id: str) -> tuple[TaskState, int] | None:
        try:
            entry = await self.kv.get(task_id)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return _decoder.decode(entry.value), entry.revision

    async def create(self, state: TaskState) -> bool:
        """Store a new task; False when it already exists (a repeated submission)."""
        try:
            await self.kv.create(state.task_id, _encoder.encode(state))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def save(self, state: TaskState, revision: int) -> int:
        try:
            return await self.kv.update(state.task_id, _encoder.encode(state), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise StaleStateError(state.task_id) from exc
