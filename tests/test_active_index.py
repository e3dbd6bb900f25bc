"""The sweep's index of unfinished tasks (`crewbus_active`) on a real nats-server: a
finished task leaves a purge marker that expires, so a sweep pass reads only what is
unfinished however many tasks the bucket has seen; older buckets are brought up to date
(per-message TTLs, direct gets)."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from crewbus.bus.kv_keys import bucket_keys, bucket_values
from crewbus.bus.kv_open import open_bucket
from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimulatedModel
from crewbus.orchestrator.service import Orchestrator
from crewbus.settings import BusSettings
from crewbus_contracts import SubmitTask, TaskCompleted, subjects
from tests.stack import final_event, in_process_stack, orchestrator_settings

pytestmark = pytest.mark.anyio

ACTIVE_STREAM = f"KV_{subjects.ACTIVE_KV}"


async def _stream_messages(nc: NATS, stream: str) -> int:
    return (await nc.jetstream().stream_info(stream)).state.messages


async def _wait_until_stream_holds(nc: NATS, stream: str, count: int,
                                   timeout_s: float = 60.0) -> None:
    with anyio.fail_after(timeout_s):
        while await _stream_messages(nc, stream) != count:
            await anyio.sleep(0.2)


async def test_finished_tasks_leave_no_marker_once_it_expires(nc: NATS, nats_server: NatsServer
                                                              ) -> None:
    js = nc.jetstream()
    await ensure_topology(js, BusSettings(nats_url=nats_server.url))
    orchestrator = await Orchestrator.create(nc, js, orchestrator_settings(nats_server.url))
    for n in range(40):
        await orchestrator.active.put(f"done{n}", b"123.0")
    for n in range(5):
        await orchestrator.active.put(f"open{n}", b"456.0")
    for n in range(40):
        await orchestrator._forget_active(f"done{n}")

    # Until the markers expire a pass delivers them, but it never reports them as timers.
    assert await orchestrator._timers() == {f"open{n}": 456.0 for n in range(5)}
    await _wait_until_stream_holds(nc, ACTIVE_STREAM, 5)
    assert await orchestrator._timers() == {f"open{n}": 456.0 for n in range(5)}
    assert await bucket_keys(orchestrator.active) == [f"open{n}" for n in range(5)]
    # A key written again after its purge is indexed again.
    await orchestrator.active.put("done0", b"789.0")
    assert (await orchestrator._timers())["done0"] == 789.0


async def test_tasks_run_through_the_stack_leave_the_index_empty(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with in_process_stack(nats_server.url, model.base_url, sweep_interval_s=0.2) as client:
        for n in range(3):
            accepted = await client.submit(SubmitTask(text=f"Compare brokers, take {n}"))
            assert isinstance(await final_event(client, accepted.task_id), TaskCompleted)
        await _wait_until_stream_holds(client.nc, ACTIVE_STREAM, 0)
        active = await client.js.key_value(subjects.ACTIVE_KV)
        assert await bucket_values(active) == {}


async def test_an_older_bucket_gets_message_ttls_and_direct_gets(nc: NATS,
                                                                 nats_server: NatsServer) -> None:
    js = nc.jetstream()
    # As nats-py before 2.16 made it: no per-message TTLs, no direct gets.
    await js.add_stream(StreamConfig(
        name=ACTIVE_STREAM, subjects=[f"$KV.{subjects.ACTIVE_KV}.>"], allow_rollup_hdrs=True,
        deny_delete=True, discard=DiscardPolicy.NEW, max_msgs_per_subject=1,
        storage=StorageType.FILE, num_replicas=1))
    await ensure_topology(js, BusSettings(nats_url=nats_server.url))
    config = (await js.stream_info(ACTIVE_STREAM)).config
    assert config.allow_msg_ttl and config.allow_direct
    orchestrator = await Orchestrator.create(nc, js, orchestrator_settings(nats_server.url))
    assert orchestrator.active._direct and orchestrator.store.kv._direct  # one replica
    await orchestrator.active.put("t1", b"1.0")
    await orchestrator._forget_active("t1")
    await _wait_until_stream_holds(nc, ACTIVE_STREAM, 0)
    # The buckets a stale answer could mislead are left to the leader only with replicas.
    api_keys = (await js.stream_info(f"KV_{subjects.API_KEYS_KV}")).config
    assert not api_keys.allow_direct
    records = await open_bucket(js, subjects.TOOL_RECORDS_KV, consistent=True)
    assert records._direct
