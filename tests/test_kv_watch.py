"""`KeyWatch`: its "caught up" marker comes after what the bucket held, even when the
server's answer to the watcher's consumer-info request overtakes the values it sent
(`tests/late_delivery_proxy.py` makes that happen every time; a busy machine does it now
and then). nats-py's own watcher then signals first: an orchestrator's shadow took that for
"no shadow configured" and left a finished task's baseline run item unrecorded."""

from __future__ import annotations

import time

import anyio
import nats
import pytest
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from crewbus.bus.kv_watch import KeyWatch
from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.settings import LLMSettings
from crewbus.replay.shadow import Shadow, ShadowStore
from crewbus.taskstore import TaskStore
from crewbus_contracts import subjects
from crewbus_contracts.shadow import ShadowConfig
from tests.late_delivery_proxy import LateDeliveryProxy
from tests.stack import orchestrator_settings

pytestmark = pytest.mark.anyio

KEYS = 20


async def _seeded(url: str) -> None:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket="W"))
        for n in range(KEYS):
            await kv.put(f"k{n}", b"v")
    finally:
        await nc.close()


async def _until_marker(updates: object) -> list[str | None]:
    seen: list[str | None] = []
    with anyio.fail_after(30):
        async for entry in updates:  # type: ignore[attr-defined]
            seen.append(None if entry is None else entry.key)
            if (entry is None and len(seen) > 1) or len(seen) > KEYS:
                return seen
    return seen


async def test_the_marker_comes_after_the_values_the_server_sent_first(
    nats_server: NatsServer,
) -> None:
    await _seeded(nats_server.url)
    values = [f"k{n}" for n in range(KEYS)]
    for ours in (False, True):
        async with LateDeliveryProxy(nats_server.port, "$KV.W.", KEYS) as proxy:
            nc = await nats.connect(proxy.url)
            try:
                kv: KeyValue = await nc.jetstream().key_value("W")
                watch = await KeyWatch.start(kv, ">") if ours else await kv.watch(">")
                try:
                    seen = await _until_marker(watch)
                finally:
                    await watch.stop()
            finally:
                await nc.close()
        assert proxy.reordered == 1
        if ours:
            assert seen == [*values, None]
        else:  # the race reproduced: nats-py's marker first
            assert seen[0] is None and seen[1:] == values


async def test_an_empty_bucket_is_caught_up_at_once(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket="E"))
        watch = await KeyWatch.start(kv, ">")
        try:
            assert await watch.updates(timeout=10) is None
            await kv.put("later", b"v")
            entry = await watch.updates(timeout=10)
            assert entry is not None and entry.key == "later"
        finally:
            await watch.stop()
    finally:
        await nc.close()


async def test_a_shadow_watching_through_a_late_delivery_knows_the_stored_shadow(
    nats_server: NatsServer,
) -> None:
    """Once `watching`, `known()` is what is stored: never None for an active shadow."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, orchestrator_settings(nats_server.url))
        await (await ShadowStore.open(js)).put(ShadowConfig(name="w", variant="production",
                                                            sample_rate=1.0,
                                                            started_at=time.time()))
    finally:
        await nc.close()
    async with LateDeliveryProxy(nats_server.port, f"$KV.{subjects.SHADOW_KV}.", 1) as proxy:
        nc = await nats.connect(proxy.url)
        try:
            js = nc.jetstream()
            shadow = Shadow(js, TaskStore(await js.key_value(subjects.TASKS_KV)), LLMSettings())
            async with anyio.create_task_group() as tg:
                await tg.start(shadow.run)
                with anyio.fail_after(30):
                    while not shadow.watching:
                        await anyio.sleep(0.01)
                known = await shadow.known()
                tg.cancel_scope.cancel()
        finally:
            await nc.close()
    assert proxy.reordered == 1
    assert known is not None and known.name == "w"
