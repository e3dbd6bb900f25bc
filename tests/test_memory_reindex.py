"""`crewbus memory reindex`: a store built by another embedder, re-embedded and switched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import msgspec
import pytest
from nats.aio.client import Client as NATS

from crewbus.memory import reindex as reindex_module
from crewbus.memory.engine import MemoryEngine
from crewbus.memory.errors import EmbedderMismatch, MemoryUnavailable
from crewbus.memory.reindex import ReindexProgress, reindex
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings
from crewbus_contracts.memory import MemoryRecord, MemorySearch, MemoryUpsert
from tests.memory_helpers import DEFAULT_EMBEDDER_ID, recall_at, retrieval_set


class Stopped(Exception):
    """Raised from the progress callback: a run stopped in the middle of the copy."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings_for(tmp_path: Path, **kw: object) -> MemorySettings:
    return msgspec.structs.replace(
        MemorySettings(data_dir=str(tmp_path / "memory"), optimize_after=0), **kw
    )


async def build_hashed_store(tmp_path: Path, extra: int = 0) -> int:
    """The labelled set's documents (and `extra` short notes), embedded by `hashed`."""
    engine = await MemoryEngine.open(settings_for(tmp_path, embedder="hashed"))
    records = [MemoryRecord(id=d["id"], text=d["text"], kind="document")
               for d in retrieval_set()["documents"]]
    records += [MemoryRecord(id=f"note-{i}", text=f"note number {i} about task {i % 7}",
                             kind="finding", task_id=f"t-{i % 7}") for i in range(extra)]
    try:
        for i in range(0, len(records), 100):
            await engine.upsert(MemoryUpsert(records=records[i : i + 100],
                                             skip_near_duplicates=False))
    finally:
        await engine.close()
    return len(records)


async def paraphrase_recall(engine: MemoryEngine) -> float:
    data = retrieval_set()
    ranked = []
    for q in data["paraphrases"]:
        hits = await engine.search(MemorySearch(query=q["query"], k=5, filter=None))
        ranked.append([h.id for h in hits.hits])
    return recall_at(5, ranked, [q["relevant"] for q in data["paraphrases"]])


@pytest.mark.anyio
async def test_the_cli_reindexes_a_hashed_store_so_the_default_embedder_can_open_it(
    tmp_path: Path,
) -> None:
    stored = await build_hashed_store(tmp_path)
    with pytest.raises(EmbedderMismatch, match="crewbus memory reindex"):
        await MemoryEngine.open(settings_for(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREWBUS_MEMORY_")}
    env["CREWBUS_MEMORY_DATA_DIR"] = str(tmp_path / "memory")
    done = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "crewbus", "memory", "reindex"], env=env, capture_output=True,
        text=True, timeout=300))
    assert done.returncode == 0, done.stderr
    assert f"{stored}/{stored} memories" in done.stderr
    assert f"hashed-ngrams-v1-384 -> {DEFAULT_EMBEDDER_ID}" in done.stderr
    engine = await MemoryEngine.open(settings_for(tmp_path))
    try:
        stats = await engine.stats()
        assert stats.embedder == DEFAULT_EMBEDDER_ID and stats.total == stored
        assert await paraphrase_recall(engine) >= 0.9  # hashed found 0.58 of them
    finally:
        await engine.close()
    kept = list((tmp_path / "memory" / "edge").glob("crewbus_memory.replaced-*"))
    assert len(kept) == 1, "the old shard is kept, not deleted"
    again = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "crewbus", "memory", "reindex"], env=env, capture_output=True,
        text=True, timeout=300))
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.mark.anyio
async def test_a_stopped_reindex_resumes_where_it_was_and_copies_each_memory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reindex_module, "PAGE", 40)
    stored = await build_hashed_store(tmp_path, extra=100)
    seen: list[int] = []

    def stop_after_two_pages(p: ReindexProgress) -> None:
        seen.append(p.done)
        if p.done >= 80:
            raise Stopped  # the run dies here, after its second page was saved

    with pytest.raises(Stopped):
        await reindex(settings_for(tmp_path), stop_after_two_pages)
    resumed: list[int] = []
    done = await reindex(settings_for(tmp_path), lambda p: resumed.append(p.done))
    assert resumed[0] == 80, "the second run starts from the saved page"
    assert done.copied == stored and resumed[-1] == stored
    engine = await MemoryEngine.open(settings_for(tmp_path))
    try:
        stats = await engine.stats()
        assert stats.total == stored
        assert stats.counts == {"document": stored - 100, "finding": 100}
        hit = (await engine.search(MemorySearch(query="note number 42 about task 0", k=1))).hits
        assert hit[0].id == "note-42" and hit[0].task_id == "t-0"
    finally:
        await engine.close()


@pytest.mark.anyio
async def test_reindex_is_refused_while_the_memory_service_owns_the_store(
    nc: NATS, tmp_path: Path
) -> None:
    await build_hashed_store(tmp_path)
    service = await MemoryService(nc, settings_for(tmp_path, embedder="hashed")).start()
    try:
        with pytest.raises(MemoryUnavailable, match="stop the memory service"):
            await reindex(settings_for(tmp_path))
    finally:
        await service.stop()


def test_reindex_of_a_qdrant_server_collection_says_what_to_do_instead() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crewbus", "memory", "reindex"], capture_output=True, text=True,
        env={**os.environ, "CREWBUS_MEMORY_BACKEND": "local"}, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("crewbus memory: reindex works on")
