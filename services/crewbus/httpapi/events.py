"""A task's events as a resumable stream: each one with its JetStream stream sequence.

The sequence is the SSE `id`. A client that reconnects with `Last-Event-ID: N` gets an
ordered consumer on the task's subject starting at N+1, so it continues exactly where it
stopped (no gap, no duplicate) for as long as the events are kept
(`CREWBUS_EVENTS_MAX_AGE_S`), not for a replay window.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from nats.errors import ConnectionClosedError, ConnectionDrainingError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from crewbus_contracts import TERMINAL_KINDS, subjects


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as stored: its stream sequence, its kind (`type` tag) and its JSON."""

    seq: int
    kind: str
    data: bytes

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


class Heartbeat:
    """Nothing happened for a heartbeat interval (the stream sends a comment)."""


HEARTBEAT = Heartbeat()


async def terminal_seq(js: JetStreamContext, task_id: str) -> int | None:
    """The stream sequence of the task's terminal event, if it has one yet."""
    found: list[int] = []
    for kind in TERMINAL_KINDS:
        try:
            msg = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.events(task_id, kind))
        except NotFoundError:
            continue
        if msg.seq is not None:
            found.append(msg.seq)
    return min(found) if found else None


async def stored_events(
    js: JetStreamContext, task_id: str, after: int | None, heartbeat_s: float
) -> AsyncIterator[StoredEvent | Heartbeat]:
    """The task's events after sequence `after` (all of them when None), then live, ending
    after the terminal event; a Heartbeat whenever none came for `heartbeat_s`."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    if after is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=after + 1)
    sub = await js.subscribe(subjects.events(task_id), stream=subjects.EVENTS_STREAM,
                             ordered_consumer=True, config=config)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=heartbeat_s)
            except NatsTimeoutError:
                yield HEARTBEAT
                continue
            event = StoredEvent(seq=msg.metadata.sequence.stream,
                                kind=subjects.part(subjects.EVENTS, "kind", msg.subject),
                                data=msg.data)
            yield event
            if event.terminal:
                return
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(
                ConnectionClosedError, ConnectionDrainingError):
            await sub.unsubscribe()
