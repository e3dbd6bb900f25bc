"""The memory service's logic without the bus: validate, embed, deduplicate, store.

The NATS service and the benchmark both drive a `MemoryEngine`, so measuring it directly
and through the bus compares the same work.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import numpy as np

from crewbus.memory.embedders import Embedder, Vectors, make_embedder, normalize_text
from crewbus.memory.errors import InvalidVector
from crewbus.memory.settings import MemorySettings
from crewbus.memory.store import StoredPoint, VectorStore
from crewbus_contracts.memory import (
    MemoryDelete,
    MemoryDeleted,
    MemoryFilter,
    MemoryHit,
    MemoryHits,
    MemoryRecord,
    MemorySearch,
    MemoryStatsReply,
    MemoryUpsert,
    MemoryUpserted,
)

T = TypeVar("T")


def content_id(kind: str, text: str) -> str:
    """The id of a memory given without one: same kind + same normalized text, same id."""
    digest = hashlib.sha256(f"{kind}\0{normalize_text(text)}".encode()).hexdigest()
    return f"{kind}-{digest[:32]}"


def _payload(record: MemoryRecord, memory_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"mid": memory_id, "kind": record.kind, "text": record.text}
    for field in ("task_id", "source", "position"):
        value = getattr(record, field)
        if value is not None:
            payload[field] = value
    if record.metadata:
        payload["metadata"] = dict(record.metadata)
    return payload


def _hit(found_id: str, score: float, payload: dict[str, Any]) -> MemoryHit:
    return MemoryHit(
        id=found_id,
        score=score,
        kind=payload.get("kind", "document"),
        text=payload.get("text", ""),
        source=payload.get("source"),
        task_id=payload.get("task_id"),
        position=payload.get("position"),
        metadata=payload.get("metadata") or {},
    )


class MemoryEngine:
    """One store + one embedder. Store calls run one at a time in a worker thread:
    neither engine wants concurrent writers, and the event loop stays free for NATS."""

    def __init__(self, store: VectorStore, embedder: Embedder, settings: MemorySettings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self._lock = threading.Lock()
        self.unoptimized_points = 0
        """Points written since the index was last built (Qdrant Edge builds HNSW only when
        asked; until then it searches by scanning)."""

    @classmethod
    async def open(cls, settings: MemorySettings, store: VectorStore | None = None) -> MemoryEngine:
        from crewbus.memory.backends import open_store

        embedder = await make_embedder(settings)
        opened = (
            store if store is not None else await anyio.to_thread.run_sync(open_store, settings)
        )
        engine = cls(opened, embedder, settings)
        try:
            await engine._run(opened.ensure_collection, embedder.dimension, embedder.id)
        except BaseException:
            await engine.close()
            raise
        return engine

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await anyio.to_thread.run_sync(locked)

    def _check_vector(self, vector: Sequence[float], what: str) -> Vectors:
        arr = np.asarray(vector, dtype=np.float32)
        if arr.ndim != 1 or arr.shape[0] != self.embedder.dimension:
            raise InvalidVector(
                f"{what} has {arr.shape[0] if arr.ndim == 1 else arr.shape} dimensions; "
                f"this memory uses {self.embedder.dimension} ({self.embedder.id})"
            )
        if not np.all(np.isfinite(arr)):
            raise InvalidVector(f"{what} contains NaN or infinity")
        norm = float(np.linalg.norm(arr))
        if norm == 0.0:
            raise InvalidVector(f"{what} is all zeros; cosine similarity is undefined for it")
        return arr / norm

    async def _vectors(self, records: Sequence[MemoryRecord]) -> Vectors:
        out = np.zeros((len(records), self.embedder.dimension), dtype=np.float32)
        todo = [i for i, r in enumerate(records) if r.vector is None]
        for i, r in enumerate(records):
            if r.vector is not None:
                out[i] = self._check_vector(r.vector, f"records[{i}].vector")
        if todo:
            out[todo] = await self.embedder.embed([records[i].text for i in todo])
        return out

    def _near_duplicates(
        self, ids: list[str], records: Sequence[MemoryRecord], vectors: Vectors
    ) -> dict[int, str]:
        """Index of each record that nearly repeats an earlier record of the batch or a
        stored memory of the same kind (and is not that same memory) -> the kept id."""
        threshold = self.settings.duplicate_threshold
        dups: dict[int, str] = {}
        kept: list[int] = []
        for i, record in enumerate(records):
            same_kind = [j for j in kept if records[j].kind == record.kind and ids[j] != ids[i]]
            if same_kind:
                sims = vectors[same_kind] @ vectors[i]
                best = int(np.argmax(sims))
                if sims[best] >= threshold:
                    dups[i] = ids[same_kind[best]]
                    continue
            found = self.store.search(vectors[i], 2, MemoryFilter(kind=record.kind), threshold)
            other = next((f for f in found if f.id != ids[i]), None)
            if other is not None:
                dups[i] = other.id
                continue
            kept.append(i)
        return dups

    async def upsert(self, request: MemoryUpsert) -> MemoryUpserted:
        records = request.records
        ids = [r.id or content_id(r.kind, r.text) for r in records]
        vectors = await self._vectors(records)

        def write() -> dict[int, str]:
            dups = (
                self._near_duplicates(ids, records, vectors) if request.skip_near_duplicates else {}
            )
            points = [
                StoredPoint(ids[i], vectors[i], _payload(r, ids[i]))
                for i, r in enumerate(records)
                if i not in dups
            ]
            if points:
                self.store.upsert(points)
                self.unoptimized_points += len(points)
            return dups

        dups = await self._run(write)
        return MemoryUpserted(
            ids=[dups.get(i, ids[i]) for i in range(len(records))],
            duplicates={ids[i]: kept for i, kept in dups.items()},
        )

    async def search(self, request: MemorySearch) -> MemoryHits:
        if request.vector is not None:
            vector = self._check_vector(request.vector, "vector")
        else:
            vector = (await self.embedder.embed([request.query]))[0]
        text = request.query if request.vector is None else None
        args = (vector, request.k, request.filter, request.min_score, text)
        if getattr(self.store, "inline_reads", False) and self._lock.acquire(blocking=False):
            # Sub-millisecond in-process searches: a thread hop would cost more than the search.
            # When the store is busy (an index build), wait in a thread, not on the loop.
            try:
                found = self.store.search(*args)
            finally:
                self._lock.release()
        else:
            found = await self._run(self.store.search, *args)
        return MemoryHits(hits=[_hit(f.id, f.score, f.payload) for f in found])

    async def delete(self, request: MemoryDelete) -> MemoryDeleted:
        deleted = 0
        if request.ids:
            deleted += await self._run(self.store.delete, request.ids)
        if request.filter is not None and not request.filter.is_empty():
            deleted += await self._run(self.store.delete_where, request.filter)
        return MemoryDeleted(deleted=deleted)

    async def stats(self) -> MemoryStatsReply:
        counts = await self._run(self.store.count_by_kind)
        return MemoryStatsReply(
            counts=counts,
            total=sum(counts.values()),
            backend=self.store.backend,
            embedder=self.embedder.id,
            dimension=self.embedder.dimension,
            collection=self.settings.collection,
        )

    async def optimize(self) -> float | None:
        """Build the store's search index now (Qdrant Edge); seconds taken, None if the
        store has nothing to build. Searches meanwhile wait in a thread."""
        optimize = getattr(self.store, "optimize", None)
        if optimize is None:
            self.unoptimized_points = 0
            return None
        started = time.perf_counter()
        await self._run(optimize)
        self.unoptimized_points = 0
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._run(self.store.close)  # after any index build still running
