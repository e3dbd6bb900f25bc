"""A memory service that is still opening its store answers `memory_starting`; writes wait
for it (bounded, with backoff) and land, searches do not wait, and no memory service at all
fails a write at once (memory is optional)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from nats.aio.client import Client as NATS

from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings

pytestmark = pytest.mark.anyio


async def test_a_write_while_the_store_opens_is_retried_until_it_lands(
    nc: NATS, tmp_path: Path,
) -> None:
    # The store opens in a worker thread: holding the only thread token keeps it opening
    # for as long as the test needs, with the real service and the real store.
    limiter = anyio.to_thread.current_default_thread_limiter()
    saved_tokens = limiter.total_tokens
    limiter.total_tokens = 1
    await limiter.acquire()
    held = True
    service = MemoryService(nc, MemorySettings(data_dir=str(tmp_path / "memory")))
    client = MemoryClient(nc, timeout_s=5)
    landed: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.start)
            with anyio.fail_after(30):
                while True:
                    try:
                        await client.stats()
                    except MemoryClientError as exc:
                        if exc.code == "memory_starting":
                            break
                    await anyio.sleep(0.02)
            asked = time.monotonic()
            with pytest.raises(MemoryClientError) as refused:
                await client.search("anything")
            assert refused.value.code == "memory_starting"
            assert time.monotonic() - asked < 2, "a search must not wait for the store"

            async def write() -> None:
                landed.append(await client.remember("written while opening", "finding"))

            tg.start_soon(write)
            await anyio.sleep(1.0)  # several retries' worth
            assert not landed
            limiter.release()
            held = False
            with anyio.fail_after(30):
                while not landed:
                    await anyio.sleep(0.02)
    finally:
        if held:
            limiter.release()
        limiter.total_tokens = saved_tokens
        await service.stop()
    assert landed


async def test_no_memory_service_fails_a_write_at_once(nc: NATS) -> None:
    asked = time.monotonic()
    with pytest.raises(MemoryClientError) as refused:
        await MemoryClient(nc).remember("nobody listens", "finding")
    assert refused.value.code == "memory_unavailable"
    assert time.monotonic() - asked < 2


async def test_searches_skip_a_missing_memory_service_for_a_while_and_writes_never_do(
    nc: NATS, tmp_path: Path,
) -> None:
    client = MemoryClient(nc, timeout_s=5, absent_s=3600)
    with pytest.raises(MemoryClientError) as first:
        await client.search("anything", 3)
    assert first.value.no_responders
    # The service comes up: a write reaches it at once, a search within `absent_s` is not
    # sent (it fails without waiting), and a client that asks every time finds it.
    service = await MemoryService(nc, MemorySettings(data_dir=str(tmp_path / "m"))).start()
    try:
        with anyio.fail_after(60):
            await client.remember("the sky is blue", "finding", task_id="t1", source=None,
                                  metadata={})
        with pytest.raises(MemoryClientError, match="in the last"):
            await client.search("sky", 3)
        asks_every_time = MemoryClient(nc, timeout_s=5, absent_s=0)
        with anyio.fail_after(60):
            hits = await asks_every_time.search("sky", 3)
        assert [h.text for h in hits] == ["the sky is blue"]
    finally:
        await service.stop()
