"""Queue depth gauges come from a real nats-server's consumer info."""

from __future__ import annotations

import asyncio

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from prometheus_client import REGISTRY

from crewbus.devstack.nats_server import NatsServer
from crewbus.telemetry.queue_collector import ConsumerRef, QueueCollector, default_consumers


def _gauge(name: str, stream: str, consumer: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"stream": stream, "consumer": consumer})


def test_collector_reports_pending_and_ack_pending(nats_server: NatsServer) -> None:
    stream, consumer = "QC_WORK", "agent-researcher"

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=stream, subjects=["qc.work.>"]))
        await js.add_consumer(stream, ConsumerConfig(
            durable_name=consumer, ack_policy=AckPolicy.EXPLICIT,
            filter_subject="qc.work.researcher",
        ))
        for i in range(5):
            await js.publish("qc.work.researcher", f"job {i}".encode())
        sub = await js.pull_subscribe_bind(consumer, stream)
        held = await sub.fetch(2, timeout=5)  # delivered, not acked

        collector = QueueCollector(js, [ConsumerRef(stream, consumer),
                                        ConsumerRef(stream, "agent-missing")])
        assert await collector.sample_once() == 1
        assert _gauge("crewbus_queue_pending", stream, consumer) == 3
        assert _gauge("crewbus_queue_ack_pending", stream, consumer) == 2
        assert _gauge("crewbus_queue_redelivered", stream, consumer) == 0
        assert _gauge("crewbus_queue_pending", stream, "agent-missing") is None

        for msg in held:
            await msg.ack_sync()
        await collector.sample_once()
        assert _gauge("crewbus_queue_ack_pending", stream, consumer) == 0
        await nc.close()

    asyncio.run(scenario())


def test_run_loop_samples_until_cancelled(nats_server: NatsServer) -> None:
    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="QC_LOOP", subjects=["qcl.>"]))
        await js.add_consumer("QC_LOOP", ConsumerConfig(durable_name="c1"))
        await js.publish("qcl.x", b"1")
        collector = QueueCollector(js, [ConsumerRef("QC_LOOP", "c1")], interval_s=0.05)
        task = asyncio.create_task(collector.run())
        for _ in range(100):
            if _gauge("crewbus_queue_pending", "QC_LOOP", "c1") == 1:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        assert _gauge("crewbus_queue_pending", "QC_LOOP", "c1") == 1
        await nc.close()

    asyncio.run(scenario())


def test_default_consumers_cover_every_agent_and_the_orchestrator() -> None:
    names = {ref.consumer for ref in default_consumers()}
    assert {"agent-planner", "agent-researcher", "agent-executor", "agent-critic",
            "orchestrator-tasks", "orchestrator-results"} == names
