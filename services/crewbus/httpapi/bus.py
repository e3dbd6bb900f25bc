"""What the gateway reads and sends on the bus, with its handles opened once.

Everything here goes through the bus's own entries: submissions through `crewbus.submit`,
commands through `crewbus.control` (the Python client), state from the tasks' KV bucket,
traces from their stream. The gateway adds no truth of its own.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from crewbus.bus.kv_keys import bucket_values
from crewbus.bus.stream_pass import read_pass
from crewbus.client import CrewbusClient
from crewbus.httpapi.apikeys import KeyStore, open_key_store
from crewbus.httpapi.problems import ProblemError
from crewbus.taskstore import TaskStore
from crewbus.tracing.reader import read_trace
from crewbus_contracts import FINAL_STATUSES, TaskState, subjects
from crewbus_contracts.traces import Span

log = logging.getLogger(__name__)

MAX_LISTED = 5_000
"""Submissions of one window that a `GET /v1/tasks` keeps at most (the newest)."""
FIRST_WINDOW_S = 60.0
"""The first window a listing looks for the newest submissions in (then 4x, 16x, ...)."""
LISTING_TIMEOUT_S = 30.0
"""How long the events stream gets to deliver one window's submissions."""
DEFAULT_WINDOW_S = 24 * 3600.0
"""How far back `GET /v1/tasks` looks without `since`."""
REQUIRED_STREAMS = (subjects.TASKS_STREAM, subjects.EVENTS_STREAM, subjects.WORK_STREAM,
                    subjects.RESULTS_STREAM)


@dataclass
class Bus:
    nc: NATS
    js: JetStreamContext
    client: CrewbusClient
    tasks: TaskStore
    active: KeyValue
    keys: KeyStore
    max_trace_spans: int = 50_000
    max_listed: int = MAX_LISTED

    @classmethod
    async def open(cls, nc: NATS, max_trace_spans: int = 50_000) -> Bus:
        js = nc.jetstream()
        return cls(nc, js, CrewbusClient(nc), TaskStore(await js.key_value(subjects.TASKS_KV)),
                   await js.key_value(subjects.ACTIVE_KV), await open_key_store(js),
                   max_trace_spans)

    def require_connection(self) -> None:
        """Refuse at once while NATS is away (a request would wait for the reconnect)."""
        if not self.nc.is_connected:
            raise ProblemError("unavailable", "not connected to NATS right now: the gateway "
                               "is reconnecting", headers={"Retry-After": "1"})

    async def state(self, task_id: str) -> TaskState | None:
        found = await self.tasks.get(task_id)
        return found[0] if found else None

    async def exists(self, task_id: str) -> bool:
        """Known to the bus: its events (one lookup, for any task that has started), its
        accepted submission, or its state. The submission is looked at before the state:
        the orchestrator saves the state before it acks the submission away, so a task
        just accepted is always found by one of the two."""
        for stream, subject in ((subjects.EVENTS_STREAM, subjects.events(task_id)),
                                (subjects.TASKS_STREAM, subjects.task(task_id))):
            info = await self.js.stream_info(stream, subjects_filter=subject)
            if info.state.subjects:
                return True
        return await self.state(task_id) is not None

    async def trace(self, task_id: str) -> list[Span]:
        return await read_trace(self.js, task_id, self.max_trace_spans)

    async def ready(self) -> str | None:
        """None when NATS answers and the streams are there; else what is missing."""
        if not self.nc.is_connected:
            return "not connected to NATS"
        for stream in REQUIRED_STREAMS:
            try:
                await self.js.stream_info(stream)
            except NotFoundError:
                return f"stream {stream} is missing"
            except (NatsTimeoutError, TimeoutError):
                return "JetStream did not answer"
        return None

    async def recent(self, since: float | None, limit: int,
                     status: str | None) -> list[TaskState]:
        """The newest tasks first. An unfinished status is read from the index of
        unfinished tasks (exact, however old); otherwise from the submissions since `since`
        (default: a day) on the events stream, looked for in the last minute first and
        then in windows four times longer, back to `since`: a listing reads about as many
        submissions as it shows, not a day's, and the newest are never cut off."""
        if status is not None and status not in FINAL_STATUSES:
            return await self._matching(await self._active_ids(), since, limit, status,
                                        stop_at_limit=False)
        now = time.time()
        oldest = since if since is not None else now - DEFAULT_WINDOW_S
        window, newer_from = FIRST_WINDOW_S, None
        found: list[TaskState] = []
        while True:
            start = max(oldest, now - window)
            ids, first = await self._submitted_since(start, newer_from)
            newer_from = first if first is not None else newer_from
            found += await self._matching(ids, since, limit - len(found), status)
            if len(found) >= limit or start <= oldest:
                return sorted(found, key=lambda s: s.created_at, reverse=True)[:limit]
            window *= 4

    async def _matching(self, ids: list[str], since: float | None, limit: int,
                        status: str | None, stop_at_limit: bool = True) -> list[TaskState]:
        """The states of `ids` (in order) with `status` created since `since`; with
        `stop_at_limit`, the first `limit` of them (the index of unfinished tasks is in no
        order, so it is read whole and sorted)."""
        found: list[TaskState] = []
        for task_id in ids:
            if stop_at_limit and len(found) >= limit:
                break
            state = await self.state(task_id)
            if state is None or (status is not None and state.status != status):
                continue
            if since is not None and state.created_at < since:
                continue
            found.append(state)
        if not stop_at_limit:
            found = sorted(found, key=lambda s: s.created_at, reverse=True)[:limit]
        return found

    async def _active_ids(self) -> list[str]:
        return list(await bucket_values(self.active))

    async def _submitted_since(self, since: float, before: int | None
                               ) -> tuple[list[str], int | None]:
        """Task ids of the `task_submitted` events since `since` and before stream sequence
        `before` (None: to the end), newest first (the newest `self.max_listed` of them),
        and the sequence of the oldest one kept: the next, older window ends there, so no
        submission is read twice."""
        kept: deque[tuple[int, str]] = deque(maxlen=self.max_listed)

        def take(msg: Msg) -> bool:
            sequence = msg.metadata.sequence.stream
            if before is not None and sequence >= before:
                return False
            kept.append((sequence, subjects.part(subjects.EVENTS, "task_id", msg.subject)))
            return True

        config = ConsumerConfig(
            filter_subject=subjects.events("*", "task_submitted"),
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=datetime.datetime.fromtimestamp(since, tz=datetime.UTC))
        try:
            await read_pass(self.js, subjects.EVENTS_STREAM, config, take, LISTING_TIMEOUT_S)
        except (TimeoutError, NatsTimeoutError):
            raise ProblemError("unavailable", "the events stream did not deliver the task "
                               "listing in time; try again", retry_after_s=5) from None
        return [task_id for _, task_id in reversed(kept)], kept[0][0] if kept else None
