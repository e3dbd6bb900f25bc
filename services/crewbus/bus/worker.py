"""The pull worker: how every consumer of durable work takes, keeps alive, acks or fails it.

A message is acked only after its handler returns, i.e. after whatever it published was
acknowledged by JetStream. While a handler runs the worker sends in-progress acks, so a
long model call is not redelivered. Failures are retried by redelivery; the last failed
delivery goes to the dead-letter stream with its reason.

Stopping: when the process's `Shutdown` is requested (SIGINT/SIGTERM, see
`crewbus.runner.run_until_signalled`) a worker stops fetching, lets handlers that finish
within `Shutdown.grace_s` finish, and naks the others so another replica gets them at once
instead of after the ack wait. A handler cancelled any other way naks its message too.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import anyio
import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from crewbus.bus.codec import BadMessageError, decode
from crewbus.bus.connection import core_client
from crewbus.telemetry import metrics
from crewbus_contracts import subjects

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryLater(Exception):
    """Transient failure: redeliver the message (until the delivery limit)."""


class RejectMessage(Exception):
    """The message can never succeed: dead-letter it now with this reason."""


def decode_or_reject(msg: Msg, decoder: msgspec.json.Decoder[T]) -> T:
    """The message's contract, or `RejectMessage` (dead-lettered at once, counted as bad
    input): a message that does not decode never will."""
    try:
        return decode(msg.data, decoder)
    except BadMessageError as exc:
        metrics.record_bad_input(exc.reason, msg.subject)
        raise RejectMessage(exc.reply.message) from exc


Handler = Callable[[Msg], Awaitable[None]]
DeadLetterHook = Callable[[Msg, str], Awaitable[None]]

DRAIN_GRACE_S = 2.0
"""How long a stopping worker waits for handlers in flight before naking them."""
NAK_TIMEOUT_S = 1.0
FETCH_WINDOW_S = 1.0
"""A pull request waits this long for work; a stopping worker lets the current one end
rather than abandon a pull request the server could still answer (that message would sit
unacked)."""
LOST_REQUEST_S = 0.5
"""How long past its expiry a pull request's end (the server's 408) is awaited before the
request counts as lost with a reconnect, and another is sent."""
RETRY_PULL_S = 0.5
"""The pause after a pull request the server refused (no such consumer, a leader change)."""


class Shutdown:
    """A stop request that every pull worker of one process obeys, and a count of the
    workers still draining, so the process exits as soon as they are done."""

    def __init__(self, grace_s: float = DRAIN_GRACE_S) -> None:
        self.grace_s = grace_s
        self.requested = anyio.Event()
        self._draining = 0
        self._idle = anyio.Event()
        self._idle.set()

    def request(self) -> None:
        self.requested.set()

    @property
    def deadline_s(self) -> float:
        """The longest a worker takes to drain: its current fetch, then the grace."""
        return FETCH_WINDOW_S + LOST_REQUEST_S + self.grace_s + NAK_TIMEOUT_S

    async def drained(self) -> None:
        """Return once no worker of this process is running (at once if none is)."""
        await self._idle.wait()

    @contextlib.contextmanager
    def worker(self) -> Iterator[None]:
        if self._draining == 0:
            self._idle = anyio.Event()
        self._draining += 1
        try:
            yield
        finally:
            self._draining -= 1
            if self._draining == 0:
                self._idle.set()


_shutdown: ContextVar[Shutdown | None] = ContextVar("crewbus_shutdown", default=None)


@contextlib.contextmanager
def shutdown_scope(shutdown: Shutdown) -> Iterator[Shutdown]:
    """Workers started inside (in tasks spawned from here) obey `shutdown`. A context
    variable, so the services need no extra parameter between the runner and the worker."""
    token = _shutdown.set(shutdown)
    try:
        yield shutdown
    finally:
        _shutdown.reset(token)


@dataclass(frozen=True)
class WorkerSpec:
    role: str
    """Who consumes: an agent role or 'orchestrator' (a metrics label)."""
    stream: str
    consumer: str
    dead_letter_subject: str
    max_deliver: int
    heartbeat_s: float
    concurrency: int = 4
    retry_delay_s: float = 1.0


async def run_pull_worker(
    js: JetStreamContext,
    spec: WorkerSpec,
    handler: Handler,
    on_dead_letter: DeadLetterHook | None = None,
) -> None:
    """Pull and handle messages, `spec.concurrency` at a time, until cancelled or until the
    process's `Shutdown` is requested (then drain and return)."""
    shutdown = _shutdown.get() or Shutdown()
    alive = InFlight()
    with shutdown.worker():
        async with Puller(js, spec) as puller, anyio.create_task_group() as handlers:
            handlers.start_soon(alive.keep_alive, spec.heartbeat_s)
            handlers.start_soon(puller.wake_on, shutdown.requested)
            while (msg := await puller.next(shutdown.requested)) is not None:
                if shutdown.requested.is_set():
                    await _nak_now(msg)  # delivered as the stop came: someone else's now
                    continue
                puller.in_flight += 1
                handlers.start_soon(_handle_one, js, spec, handler, on_dead_letter, msg,
                                    puller, alive)
            await puller.drain(shutdown.grace_s)
            handlers.cancel_scope.cancel()  # what is left naks its message (_handle_one)


class Puller:
    """A consumer's messages, pulled with one long-lived pull request at a time for as many
    messages as there are free slots, each handed out as it arrives.

    Why not nats-py's `fetch`: each fetch is a pull request that ends with the first
    messages (a `no_wait` request, then a 404 status), so every message cost a request, a
    status reply and a few asyncio tasks of `next_msg`. A request for N messages that
    lingers (`expires`, no `no_wait`) serves the next N messages as they come: at one
    message in flight and 4 slots, one request per 4 messages, and no status replies but
    the expiry's (408) once per `FETCH_WINDOW_S` when idle. Messages in flight plus those
    the live request may still bring never exceed `spec.concurrency` (save one that a
    request counted as lost still brings: it is handled all the same).
    """

    def __init__(self, js: JetStreamContext, spec: WorkerSpec) -> None:
        self.nc = core_client(js)
        self.spec = spec
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.consumer}"
        self.in_flight = 0
        """Messages handed out and not settled yet (`done` counts one down)."""
        self._pending = 0
        """Messages the live pull request may still bring (0: no live request)."""
        self._live_until = 0.0
        self._retry_at = 0.0
        self._send, self._receive = anyio.create_memory_object_stream[Msg | None](
            max_buffer_size=math.inf)
        self._sub: Subscription | None = None

    async def __aenter__(self) -> Puller:
        self._sub = await self.nc.subscribe(self.nc.new_inbox(), cb=self._arrived)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with contextlib.suppress(Exception):
            assert self._sub is not None
            await self._sub.unsubscribe()  # else nc.drain() waits on the subscription

    async def _arrived(self, msg: Msg) -> None:
        self._send.send_nowait(msg)

    def done(self) -> None:
        """A handed-out message is settled: its slot may be asked for again."""
        self.in_flight -= 1
        self._send.send_nowait(None)

    async def wake_on(self, event: anyio.Event) -> None:
        await event.wait()
        self._send.send_nowait(None)

    async def next(self, stop: anyio.Event) -> Msg | None:
        """The next message; None once `stop` is set and no pull request is live."""
        while True:
            now = time.monotonic()
            if self._pending > 0 and now >= self._live_until:
                self._pending = 0  # its end never came (a reconnect): ask again
            if self._pending == 0:
                if stop.is_set():
                    return None
                free = self.spec.concurrency - self.in_flight
                if free > 0 and now >= self._retry_at:
                    await self._request(free, now)
            wait = (self._live_until if self._pending else
                    self._retry_at if now < self._retry_at else math.inf) - now
            msg: Msg | None = None
            with anyio.move_on_after(max(wait, 0.0)):
                msg = await self._receive.receive()
            if msg is None:
                continue  # a slot came free, a stop, or the request's time is up
            status = JetStreamContext.is_status_msg(msg)
            if status is None:
                self._pending = max(self._pending - 1, 0)
                return msg
            if status == "100":
                continue  # a heartbeat
            self._pending = 0  # expired (408), or refused: the request is over
            if status not in ("408", "404"):
                description = (msg.headers or {}).get("Description", "")
                log.warning("pull from %s refused (%s %s); retrying", self.spec.consumer,
                            status, description)
                self._retry_at = time.monotonic() + RETRY_PULL_S

    async def _request(self, batch: int, now: float) -> None:
        assert self._sub is not None
        expires_ns = int(FETCH_WINDOW_S * 1e9)
        try:
            await self.nc.publish(
                self.subject, b'{"batch":%d,"expires":%d}' % (batch, expires_ns),
                reply=self._sub.subject)
        except Exception as exc:  # disconnected, closing
            log.warning("pull from %s failed (%r); retrying", self.spec.consumer, exc)
            self._retry_at = now + RETRY_PULL_S
            return
        self._pending = batch
        self._live_until = now + FETCH_WINDOW_S + LOST_REQUEST_S

    async def drain(self, grace_s: float) -> None:
        """Wait up to `grace_s` for the messages in flight to be settled; any message still
        delivered meanwhile is handed back."""
        with anyio.move_on_after(grace_s):
            while self.in_flight > 0:
                msg = await self._receive.receive()
                if msg is not None and JetStreamContext.is_status_msg(msg) is None:
                    await _nak_now(msg)
        if self.in_flight:
            log.info("%s: stopping; %d message(s) in flight handed back", self.spec.consumer,
                     self.in_flight)


async def _nak_now(msg: Msg) -> None:
    """Hand the message back for immediate redelivery; best effort, never blocks long."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(NAK_TIMEOUT_S):
        try:
            await msg.nak()
        except Exception as exc:  # acked already, or the connection is gone
            log.debug("nak failed: %s", exc)


class InFlight:
    """The messages a worker is handling, kept alive by one task for all of them (not a
    task and a task group per message: those were a measurable share of a hop's CPU)."""

    def __init__(self) -> None:
        self._since: dict[int, tuple[Msg, float]] = {}

    def add(self, msg: Msg) -> None:
        self._since[id(msg)] = (msg, time.monotonic())

    def discard(self, msg: Msg) -> None:
        self._since.pop(id(msg), None)

    async def keep_alive(self, every_s: float) -> None:
        """An in-progress ack for each message held `every_s` since its last sign of life
        (so each one is marked every `every_s` to 1.5 times `every_s`)."""
        while True:
            await anyio.sleep(every_s / 2)
            now = time.monotonic()
            for key, (msg, since) in list(self._since.items()):
                if now - since < every_s or key not in self._since:
                    continue
                self._since[key] = (msg, now)
                try:
                    await msg.in_progress()
                except Exception as exc:
                    log.debug("in-progress ack failed: %s", exc)


async def _handle_one(
    js: JetStreamContext,
    spec: WorkerSpec,
    handler: Handler,
    on_dead_letter: DeadLetterHook | None,
    msg: Msg,
    puller: Puller,
    alive: InFlight,
) -> None:
    metrics.record_bus_message(msg.subject, "in")
    if msg.metadata.num_delivered > 1:
        metrics.record_redelivery(spec.role)
    alive.add(msg)
    try:
        try:
            await handler(msg)
            await msg.ack()
        except RejectMessage as exc:
            await _dead_letter(js, spec, msg, "rejected", f"rejected: {exc}", on_dead_letter)
        except Exception as exc:
            await _retry_or_dead_letter(js, spec, msg, exc, on_dead_letter)
    except anyio.get_cancelled_exc_class():
        await _nak_now(msg)  # stopping: redeliver now, not after the ack wait
        raise
    except Exception:
        log.exception("could not settle a message from %s", spec.consumer)
    finally:
        alive.discard(msg)
        puller.done()


async def _retry_or_dead_letter(
    js: JetStreamContext,
    spec: WorkerSpec,
    msg: Msg,
    exc: Exception,
    on_dead_letter: DeadLetterHook | None,
) -> None:
    deliveries = msg.metadata.num_delivered
    if deliveries >= spec.max_deliver:
        reason = f"failed on all {deliveries} deliveries; last error: {exc}"
        await _dead_letter(js, spec, msg, "max_deliveries", reason, on_dead_letter)
        return
    log.warning("%s: delivery %d failed (%s); will retry", spec.consumer, deliveries, exc)
    await msg.nak(delay=spec.retry_delay_s * deliveries)


async def _dead_letter(
    js: JetStreamContext,
    spec: WorkerSpec,
    msg: Msg,
    reason_code: str,
    reason: str,
    on_dead_letter: DeadLetterHook | None,
) -> None:
    """Park the message with its reason, tell whoever cares, then take it off the queue."""
    metrics.record_dead_letter(spec.role, reason_code)
    await publish_dead_letter(
        js,
        spec.dead_letter_subject,
        msg.data,
        reason=reason,
        origin=msg.subject,
        deliveries=msg.metadata.num_delivered,
    )
    if on_dead_letter is not None:
        await on_dead_letter(msg, reason)
    await msg.term()


async def publish_dead_letter(
    js: JetStreamContext,
    subject: str,
    data: bytes,
    *,
    reason: str,
    origin: str,
    deliveries: int,
) -> None:
    await js.publish(
        subject,
        data,
        stream=subjects.DLQ_STREAM,
        headers={
            "Crewbus-Dead-Letter-Reason": reason[:2000],
            "Crewbus-Origin-Subject": origin,
            "Crewbus-Deliveries": str(deliveries),
        },
    )
