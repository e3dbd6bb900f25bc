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
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import anyio
import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from crewbus.bus.codec import BadMessageError, decode
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
"""A fetch waits this long for work; a stopping worker lets the current one end rather than
abandon a pull request the server could still answer (that message would sit unacked)."""


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
        return FETCH_WINDOW_S + self.grace_s + NAK_TIMEOUT_S

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
    """Fetch and handle messages, `spec.concurrency` at a time, until cancelled or until the
    process's `Shutdown` is requested (then drain and return)."""
    shutdown = _shutdown.get() or Shutdown()
    sub = await _bind(js, spec)
    slots = anyio.Semaphore(spec.concurrency)
    alive = InFlight()
    with shutdown.worker():
        async with anyio.create_task_group() as handlers:
            handlers.start_soon(alive.keep_alive, spec.heartbeat_s)
            while await _slot_or_stop(slots, shutdown.requested):
                held = 1 + _take_free(slots)
                try:
                    msgs = await sub.fetch(batch=held, timeout=FETCH_WINDOW_S)
                except (NatsTimeoutError, TimeoutError):
                    msgs = []  # nothing to do within the fetch window (or a busy server)
                except Exception as exc:  # disconnected, server restarting, consumer recreated
                    log.warning("fetch from %s failed (%r); retrying", spec.consumer, exc)
                    msgs = []
                    await anyio.sleep(0.5)
                    sub = await _rebind(js, spec, sub, shutdown.requested)
                if shutdown.requested.is_set():
                    await _nak_all(msgs)  # fetched as the stop came: someone else's now
                    msgs = []
                for msg in msgs:
                    handlers.start_soon(_handle_one, js, spec, handler, on_dead_letter, msg,
                                        slots, alive)
                for _ in range(held - len(msgs)):
                    slots.release()
            await _drain(spec, slots, shutdown.grace_s)
            handlers.cancel_scope.cancel()  # what is left naks its message (_handle_one)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()  # else nc.drain() waits on the pull subscription


async def _slot_or_stop(slots: anyio.Semaphore, stop: anyio.Event) -> bool:
    """Take a free slot, or return False (holding none) once a stop is requested."""
    if stop.is_set():
        return False
    if slots.value > 0:  # the usual case: no waiting, so no task group per fetch
        slots.acquire_nowait()
        return True
    got = False
    async with anyio.create_task_group() as tg:

        async def take() -> None:
            nonlocal got
            await slots.acquire()
            got = True
            tg.cancel_scope.cancel()

        async def stop_waiting() -> None:
            await stop.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(take)
        tg.start_soon(stop_waiting)
    if got and stop.is_set():
        slots.release()
        return False
    return got


async def _drain(spec: WorkerSpec, slots: anyio.Semaphore, grace_s: float) -> None:
    """Wait up to `grace_s` for the handlers in flight (every slot free again)."""
    taken = 0
    with anyio.move_on_after(grace_s):
        while taken < spec.concurrency:
            await slots.acquire()
            taken += 1
    busy = spec.concurrency - taken
    if busy:
        log.info("%s: stopping; %d message(s) in flight handed back", spec.consumer, busy)


async def _nak_all(msgs: list[Msg]) -> None:
    for msg in msgs:
        await _nak_now(msg)


async def _nak_now(msg: Msg) -> None:
    """Hand the message back for immediate redelivery; best effort, never blocks long."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(NAK_TIMEOUT_S):
        try:
            await msg.nak()
        except Exception as exc:  # acked already, or the connection is gone
            log.debug("nak failed: %s", exc)


def _take_free(slots: anyio.Semaphore) -> int:
    """Take every slot that is free right now, so one fetch can fill them all."""
    taken = 0
    while slots.value > 0:
        slots.acquire_nowait()
        taken += 1
    return taken


async def _bind(js: JetStreamContext, spec: WorkerSpec) -> JetStreamContext.PullSubscription:
    return await js.pull_subscribe_bind(durable=spec.consumer, stream=spec.stream)


async def _rebind(
    js: JetStreamContext, spec: WorkerSpec, old: JetStreamContext.PullSubscription,
    stop: anyio.Event,
) -> JetStreamContext.PullSubscription:
    """Bind again until it works, or until a stop makes it pointless (then `old`)."""
    with contextlib.suppress(Exception):
        await old.unsubscribe()
    while not stop.is_set():
        try:
            return await _bind(js, spec)
        except Exception as exc:
            log.debug("rebinding %s: %s", spec.consumer, exc)
            await anyio.sleep(0.5)
    return old


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
    slots: anyio.Semaphore,
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
        slots.release()


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
