"""The submit gateway: validates a submission, stores it durably, replies with the task id.

Clients send a SubmitTask to `crewbus.submit` (NATS request/reply) and get a TaskAccepted
only once the task is in the TASKS stream, or an ErrorReply saying what was wrong.

The gateway is the one bus reader that refuses unknown fields (with their paths): a field a
client sets is either honoured or refused, never silently dropped, so a misspelt budget
cannot run a task without one. A client that sends a new field to an older gateway learns
so at once. Behind the gateway the bus ignores unknown fields (docs/contracts.md).

A task's variant must exist and every prompt it names must resolve, or the task is refused
here: an agent never serves it with production's prompt instead.
"""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from crewbus.bus.codec import BadMessageError, decode, encode
from crewbus.bus.replies import answer
from crewbus.ids import task_id_for
from crewbus.taskstore import TaskStore
from crewbus.telemetry import metrics
from crewbus.variants import VariantResolver, VariantsError, open_resolver
from crewbus_contracts import ErrorReply, SubmitTask, TaskAccepted, subjects

log = logging.getLogger(__name__)

_submit_decoder = msgspec.json.Decoder(SubmitTask)


class SubmitGateway:
    def __init__(self, nc: NATS, js: JetStreamContext, store: TaskStore, max_bytes: int,
                 variants: VariantResolver) -> None:
        self.nc = nc
        self.js = js
        self.store = store
        self.max_bytes = max_bytes
        self.variants = variants
        """Read without a cache: a variant set or deleted a moment ago is seen as it is."""

    async def start(self) -> None:
        """Answer submissions from now on (the subscription is on the server on return)."""
        await self.nc.subscribe(subjects.SUBMIT, queue=subjects.SUBMIT_QUEUE, cb=self._on_submit)
        await self.nc.flush()

    async def _on_submit(self, msg: Msg) -> None:
        await answer(msg, self.accept, "submission")

    async def accept(self, data: bytes) -> TaskAccepted | ErrorReply:
        try:
            submit = decode(data, _submit_decoder, max_bytes=self.max_bytes, refuse_unknown=True)
        except BadMessageError as exc:
            metrics.record_bad_input(exc.reason, subjects.SUBMIT)
            return exc.reply
        task_id = task_id_for(submit.idempotency_key)
        if await self.store.get(task_id) is not None:
            return TaskAccepted(task_id=task_id, duplicate=True)
        try:
            await self.variants.check(submit.variant)
        except VariantsError as exc:
            metrics.record_bad_input("unknown_variant", subjects.SUBMIT)
            return ErrorReply(code="invalid_message", message=f"`$.variant`: {exc}")
        ack = await self.js.publish(
            subjects.task(task_id),
            encode(submit),
            stream=subjects.TASKS_STREAM,
            headers={"Nats-Msg-Id": task_id},
        )
        metrics.record_task_submitted()
        return TaskAccepted(task_id=task_id, duplicate=bool(ack.duplicate))


async def start_gateway(nc: NATS, js: JetStreamContext, max_bytes: int) -> SubmitGateway:
    """Start a gateway on `nc` that answers `crewbus.submit`, refusing submissions over
    `max_bytes`; it is subscribed when this returns.

    It opens its own task store, read only to answer a resubmission as a duplicate. For
    now `crewbus serve orchestrator` starts one beside the orchestrator, in its process.
    """
    store = TaskStore(await js.key_value(subjects.TASKS_KV))
    gateway = SubmitGateway(nc, js, store, max_bytes, await open_resolver(js))
    await gateway.start()
    return gateway
