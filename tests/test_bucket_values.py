"""`bucket_values`, the one-pass read of a KV bucket that the orchestrator's sweep, the
HTTP API, the MCP server and the experiment store use, on a real nats-server.

CI once saw a resumed experiment read back no run items at all: nats-py's watcher can
signal "all delivered" before the messages the server already sent it, so a reader
that stops at that signal reads nothing. A pass must read every value, every time."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from crewbus.bus.kv_keys import bucket_values

pytestmark = pytest.mark.anyio

PASSES = 150


async def _bucket(nc: NATS, name: str = "values") -> KeyValue:
    return await nc.jetstream().create_key_value(bucket=name, history=1)


async def _consumers(nc: NATS, kv: KeyValue) -> int:
    return (await nc.jetstream().stream_info(kv._stream)).state.consumer_count


async def test_every_pass_reads_every_value_and_leaves_no_consumer(nc: NATS) -> None:
    kv = await _bucket(nc)
    expected = {f"run.items.k{n}.1": f"item {n}".encode() * 20 for n in range(40)}
    for key, value in expected.items():
        await kv.put(key, value)
    await kv.put("run", b"the header, outside the filter")

    for _ in range(PASSES):
        assert await bucket_values(kv, "run.items.>") == expected
    # Each pass deletes its consumer; a watcher's stays for minutes after it stops.
    assert await _consumers(nc, kv) == 0


async def test_passes_beside_a_writer_see_every_value_written_before_they_began(
        nc: NATS) -> None:
    kv = await _bucket(nc)
    for n in range(20):
        await kv.put(f"old{n}", b"x")
    written = 0

    async def write() -> None:
        nonlocal written
        for n in range(300):
            await kv.put(f"new{n}", b"y")
            written = n + 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        while written < 300:
            before = written
            found = await bucket_values(kv)
            assert {f"old{n}" for n in range(20)} <= found.keys()
            assert {f"new{n}" for n in range(before)} <= found.keys()


async def test_deleted_and_purged_keys_are_left_out(nc: NATS) -> None:
    kv = await _bucket(nc)
    for key in ("kept", "deleted", "purged"):
        await kv.put(key, b"v")
    await kv.delete("deleted")
    await kv.purge("purged")

    assert await bucket_values(kv) == {"kept": b"v"}


async def test_an_empty_bucket_or_filter_reads_nothing_at_once(nc: NATS) -> None:
    kv = await _bucket(nc)
    with anyio.fail_after(30):
        assert await bucket_values(kv) == {}
        await kv.put("a.b", b"v")
        assert await bucket_values(kv, "z.>") == {}
    assert await _consumers(nc, kv) == 0

