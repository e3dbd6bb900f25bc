"""`crewbus memory reindex`: re-embed an Edge collection with the configured embedder.

A collection built by another embedder (say `hashed`, before `minilm-onnx` became the
default) is refused by the memory service. Reindexing reads every memory's text from it,
embeds it again, writes it with the same id and payload into `<collection>.reindex`, then
switches: the old shard becomes `<collection>.replaced-<UTC time>` (kept until you delete
it), the new one takes the collection's name. The memory service must be stopped (the
store has one owner).

Resumable: points are copied in id order, page by page, and the next page's offset is
saved beside the new shard after each page, so a run that was stopped (Ctrl-C, kill -9)
continues where it was. Upserts are by id, so a page done twice is done once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from crewbus.memory.edge_store import META_NAME, EdgeStore, EdgeTuning
from crewbus.memory.embedders import Embedder, make_embedder
from crewbus.memory.errors import MemoryUnavailable, StoreLocked
from crewbus.memory.lock import DirLock
from crewbus.memory.settings import MemorySettings
from crewbus.memory.store import StoredPoint

PROGRESS_NAME = "crewbus-reindex.json"
PAGE = 256


@dataclass(frozen=True)
class ReindexProgress:
    done: int
    total: int


@dataclass(frozen=True)
class Reindexed:
    copied: int
    embedder: str
    previous: str | None
    """The old embedder's id; None when the collection was already built by this one."""
    kept_at: Path | None
    """Where the replaced shard now lives."""


def _meta(path: Path) -> dict[str, Any] | None:
    meta_path = path / META_NAME
    return json.loads(meta_path.read_text()) if meta_path.exists() else None


def _lock(data_dir: Path) -> DirLock:
    try:
        return DirLock(data_dir).acquire()
    except StoreLocked as exc:
        raise MemoryUnavailable(
            f"the memory store in {data_dir} is in use ({exc.holder}): stop the memory "
            "service (or `crewbus up`) first; reindexing needs the store to itself"
        ) from None


async def reindex(
    settings: MemorySettings, progress: Callable[[ReindexProgress], None] | None = None
) -> Reindexed:
    if settings.resolved_backend() != "edge":
        raise ValueError(
            "reindex works on the embedded Qdrant Edge store; with a Qdrant server or local "
            "mode, set another CREWBUS_MEMORY_COLLECTION and ingest again"
        )
    data_dir = settings.store_dir() / "edge"
    old_path = data_dir / settings.collection
    new_name = f"{settings.collection}.reindex"
    new_path = data_dir / new_name
    embedder = await make_embedder(settings)
    lock = _lock(data_dir)
    try:
        old_meta = _meta(old_path)
        if old_meta is None and _finished(new_path):
            # a run stopped between the two renames: finish the switch
            return _switch(old_path, new_path, embedder, "unknown", _copied(new_path))
        if old_meta is None:
            raise ValueError(f"no memory collection {settings.collection!r} in {data_dir}")
        if old_meta["embedder"] == embedder.id and old_meta["dimension"] == embedder.dimension:
            return Reindexed(0, embedder.id, None, None)
        copied = await _copy(old_path, new_path, new_name, data_dir, lock, embedder,
                             settings.uses_hybrid(), progress, settings.edge_tuning())
        return _switch(old_path, new_path, embedder, str(old_meta["embedder"]), copied)
    finally:
        lock.release()


def _progress_file(new_path: Path) -> Path:
    return new_path / PROGRESS_NAME


def _finished(new_path: Path) -> bool:
    path = _progress_file(new_path)
    return path.exists() and bool(json.loads(path.read_text()).get("finished"))


def _copied(new_path: Path) -> int:
    path = _progress_file(new_path)
    return int(json.loads(path.read_text()).get("copied", 0)) if path.exists() else 0


async def _copy(
    old_path: Path, new_path: Path, new_name: str, data_dir: Path, lock: DirLock,
    embedder: Embedder, hybrid: bool, progress: Callable[[ReindexProgress], None] | None,
    tuning: EdgeTuning,
) -> int:
    old = qe.EdgeShard.load(str(old_path))
    new = EdgeStore(data_dir, new_name, hybrid, lock=lock, tuning=tuning)
    try:
        new.ensure_collection(embedder.dimension, embedder.id)  # refuses a half-built other one
        total = old.count(qe.CountRequest(exact=True))
        state_path = _progress_file(new_path)
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        offset: qe.PointId | None = uuid.UUID(state["offset"]) if state.get("offset") else None
        copied = int(state.get("copied", 0))
        if progress:
            progress(ReindexProgress(copied, total))
        while True:
            page, offset = old.scroll(
                qe.ScrollRequest(offset=offset, limit=PAGE, with_payload=True, with_vector=False)
            )
            if page:
                payloads = [dict(p.payload or {}) for p in page]
                vectors = await embedder.embed([str(p.get("text", "")) for p in payloads])
                new.upsert([
                    StoredPoint(str(p.get("mid", r.id)), vectors[i], p)
                    for i, (r, p) in enumerate(zip(page, payloads, strict=True))
                ])
                new.shard.flush()
                copied += len(page)
            saved = str(offset) if offset is not None else None  # point ids are UUIDs here
            state_path.write_text(json.dumps(
                {"offset": saved, "copied": copied, "finished": offset is None}))
            if progress:
                progress(ReindexProgress(copied, total))
            if offset is None:
                return copied
    finally:
        old.close()
        new.close()


def _switch(
    old_path: Path, new_path: Path, embedder: Embedder, previous: str | None, copied: int
) -> Reindexed:
    """Two renames in one directory; a crash between them is finished by the next run."""
    kept_at = None
    if old_path.exists():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        kept_at = old_path.with_name(f"{old_path.name}.replaced-{stamp}")
        old_path.rename(kept_at)
    new_path.rename(old_path)
    _progress_file(old_path).unlink(missing_ok=True)
    return Reindexed(copied, embedder.id, previous, kept_at)
