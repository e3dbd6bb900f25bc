"""The pull worker: how every consumer of durable work takes, keeps alive, acks or fails it.

A message is acked only after its handler returns, i.e. after whatever it published was
acknowledged by JetStream. While a handler runs the worker sends in-progress acks, so a
long model call is not redelivered. Failures are retried by redelivery; the last failed
delivery goes to the dead-letter stream with its reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from crewbus.telemetry import metrics
from crewbus_contracts import subjects

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Transient failure: redeliver the message (until the delivery limit)."""


class RejectMessage(Exception):
    """The message can never succeed: dead-letter it now with this reason."""


Handler = Callable[[Msg], Awaitable[None]]
DeadLetterHook = Callable[[Msg, str], Awaitable[None]]


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
    """Fetch and handle messages forever (until cancelled), `spec.concurrency` at a time."""
    sub = await _bind(js, spec)
    slots = anyio.Semaphore(spec.concurrency)
    async with anyio.create_task_group() as tg:
        while True:
            await slots.acquire()
            held = 1 + _take_free(slots)
            try:
                msgs = await sub.fetch(batch=held, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                msgs = []  # nothing to do within the fetch window (or a busy server)
            except Exception as exc:  # disconnected, server restarting, consumer recreated
                log.warning("fetch from %s failed (%r); retrying", spec.consumer, exc)
                msgs = []
                await anyio.sleep(0.5)
                sub = await _rebind(js, spec, sub)
            for msg in msgs:
                tg.start_soon(_handle_one, js, spec, handler, on_dead_letter, msg, slots)
            for _ in range(held - len(msgs)):
                slots.release()


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
    js: JetStreamContext, spec: WorkerSpec, old: JetStreamContext.PullSubscription
) -> JetStreamContext.PullSubscription:
    with contextlib.suppress(Exception):
        await old.unsubscribe()
    while True:
        try:
            return await _bind(js, spec)
        except Exception as exc:
            log.debug("rebinding %s: %s", spec.consumer, exc)
            await anyio.sleep(0.5)


async def _handle_one(
    js: JetStreamContext,
    spec: WorkerSpec,
    handler: Handler,
    on_dead_letter: DeadLetterHook | None,
    msg: Msg,
    slots: anyio.Semaphore,
) -> None:
    metrics.record_bus_message(msg.subject, "in")
    if msg.metadata.num_delivered > 1:
        metrics.record_redelivery(spec.role)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep_alive, msg, spec.heartbeat_s)
            try:
                await handler(msg)
                await msg.ack()
            except RejectMessage as exc:
                await _dead_letter(js, spec, msg, "rejected", f"rejected: {exc}", on_dead_letter)
            except Exception as exc:
                await _retry_or_dead_letter(js, spec, msg, exc, on_dead_letter)
            finally:
                tg.cancel_scope.cancel()
    except Exception:
        log.exception("could not settle a message from %s", spec.consumer)
    finally:
        slots.release()


async def _keep_alive(msg: Msg, every_s: float) -> None:
    while True:
        await anyio.sleep(every_s)
        try:
            await msg.in_progress()
        except Exception as exc:
            log.debug("in-progress ack failed: %s", exc)


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
