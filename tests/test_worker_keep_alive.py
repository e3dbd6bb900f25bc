"""The pull worker keeps every message it holds alive with one task for all of them: work
that outlasts the ack wait several times over is delivered once and acked once."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from crewbus.bus.topology import ensure_topology
from crewbus.bus.worker import WorkerSpec, run_pull_worker
from crewbus.settings import BusSettings
from crewbus_contracts import subjects

pytestmark = pytest.mark.anyio

ACK_WAIT_S = 1.0


async def test_slow_handlers_outlasting_the_ack_wait_are_delivered_once(nc: NATS) -> None:
    js = nc.jetstream()
    await ensure_topology(js, BusSettings(ack_wait_s=ACK_WAIT_S, heartbeat_s=0.3))
    role = "researcher"
    deliveries: list[int] = []
    finished = anyio.Event()

    async def slow(msg: Msg) -> None:
        deliveries.append(msg.metadata.num_delivered)
        await anyio.sleep(ACK_WAIT_S * 3)
        if len(deliveries) >= 2:
            finished.set()

    spec = WorkerSpec(role=role, stream=subjects.WORK_STREAM,
                      consumer=subjects.worker_consumer(role),
                      dead_letter_subject=subjects.dead_letter(role), max_deliver=3,
                      heartbeat_s=0.3, concurrency=4)
    for i in range(2):
        await js.publish(subjects.work(role), f'{{"n":{i}}}'.encode(),
                         stream=subjects.WORK_STREAM)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_pull_worker, js, spec, slow)
        with anyio.fail_after(30):
            await finished.wait()
        await anyio.sleep(ACK_WAIT_S * 1.5)  # a lapsed keep-alive would redeliver by now
        tg.cancel_scope.cancel()
    assert deliveries == [1, 1]
    info = await js.consumer_info(subjects.WORK_STREAM, subjects.worker_consumer(role))
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
