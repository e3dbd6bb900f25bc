"""Ingest: chunking by headings and paragraphs, idempotent re-ingest, progress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.memory.client import MemoryClient
from crewbus.memory.ingest import FileIngested, chunk_text, ingest
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings

DOC = """# Deploying crewbus

Intro paragraph about deployment.

## With docker compose

Run docker compose up; scale agents with --scale researcher=3.

## Memory at scale

An embedded store belongs to one process. Point every memory service at a Qdrant server.
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[MemoryClient]:
    nc = await nats.connect(nats_server.url)
    svc = await MemoryService(nc, MemorySettings(data_dir=str(tmp_path / "mem"))).start()
    try:
        yield MemoryClient(nc)
    finally:
        await svc.stop()
        await nc.close()


def test_markdown_is_chunked_by_heading_with_the_heading_path_kept() -> None:
    chunks = chunk_text(DOC, "deploy.md")
    assert [c.position for c in chunks] == [0, 1, 2]
    assert chunks[1].text.startswith("Deploying crewbus > With docker compose\n")
    assert "--scale researcher=3" in chunks[1].text
    assert chunks[2].text.startswith("Deploying crewbus > Memory at scale\n")


def test_long_paragraphs_are_split_under_the_size_limit() -> None:
    text = " ".join(f"Sentence number {i} says something." for i in range(200))
    chunks = chunk_text(text, "long.txt", max_chars=300, markdown=False)
    assert len(chunks) > 10
    assert all(len(c.text) <= 300 for c in chunks)
    assert "Sentence number 199" in chunks[-1].text


def test_chunk_ids_depend_on_source_position_and_text() -> None:
    a = chunk_text(DOC, "a.md")
    assert [c.id for c in a] == [c.id for c in chunk_text(DOC, "a.md")]
    assert a[0].id != chunk_text(DOC, "b.md")[0].id


@pytest.mark.anyio
async def test_ingesting_twice_stores_each_chunk_once(client: MemoryClient, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text(DOC)
    (docs / "notes.txt").write_text("First note.\n\nSecond note about Qdrant Edge.\n")
    (docs / "image.png").write_bytes(b"\x89PNG")
    seen: list[FileIngested] = []
    first = await ingest(client, [docs], progress=seen.append)
    second = await ingest(client, [docs])
    assert first == second
    assert [(p.done, p.total) for p in seen] == [(1, 2), (2, 2)]
    stats = await client.stats()
    assert stats.counts == {"document": 4}
    hits = await client.search("how do I scale memory with a Qdrant server", k=1)
    assert hits[0].source == str((docs / "deploy.md").resolve())
    assert hits[0].position == 2


@pytest.mark.anyio
async def test_an_edited_file_leaves_no_stale_chunks(client: MemoryClient, tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text(DOC)
    await ingest(client, [path])
    path.write_text("# Short now\n\nOnly one paragraph remains.\n")
    await ingest(client, [path])
    assert (await client.stats()).counts == {"document": 1}
