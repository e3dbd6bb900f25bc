"""VectorStore on Qdrant Edge: Qdrant's own engine (HNSW, payload indexes) in process.

The shard lives in `<data dir>/<collection>`; which embedder built it is kept beside it
in `crewbus-collection.json`, since a shard has no collection metadata of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from crewbus.memory.errors import EmbedderMismatch, MemoryUnavailable
from crewbus.memory.lock import DirLock
from crewbus.memory.store import (
    INDEXED_FIELDS,
    Found,
    StoredPoint,
    filter_conditions,
    point_id,
)
from crewbus_contracts.memory import MemoryFilter

META_NAME = "crewbus-collection.json"


def _filter(flt: MemoryFilter | None) -> qe.Filter | None:
    conds = filter_conditions(flt)
    if not conds:
        return None
    return qe.Filter(must=[qe.FieldCondition(k, match=qe.MatchValue(v)) for k, v in conds.items()])


class EdgeStore:
    backend = "edge"
    inline_reads = True
    """Searches take well under a millisecond even at 50k memories (HNSW), so the service
    runs them on the event loop instead of paying ~0.4 ms for a worker thread."""

    def __init__(self, data_dir: Path, collection: str) -> None:
        self.data_dir = data_dir
        self.collection = collection
        self.path = data_dir / collection
        self._lock = DirLock(data_dir).acquire()
        self._shard: qe.EdgeShard | None = None

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise MemoryUnavailable("the Qdrant Edge shard is not open (ensure_collection first)")
        return self._shard

    def ensure_collection(self, dimension: int, embedder_id: str) -> None:
        meta_path = self.path / META_NAME
        try:
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                if meta["embedder"] != embedder_id or meta["dimension"] != dimension:
                    raise EmbedderMismatch(
                        self.collection, meta["embedder"], meta["dimension"], embedder_id, dimension
                    )
                self._shard = qe.EdgeShard.load(str(self.path))
            else:
                config = qe.EdgeConfig(
                    vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)
                )
                self._shard = qe.EdgeShard.create(str(self.path), config)
                for field in INDEXED_FIELDS:
                    self._shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                    )
                meta_path.write_text(json.dumps({"embedder": embedder_id, "dimension": dimension}))
        except EmbedderMismatch:
            raise
        except Exception as exc:
            self.close()
            raise MemoryUnavailable(f"cannot open Qdrant Edge shard at {self.path}: {exc}") from exc

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        self.shard.update(
            qe.UpdateOperation.upsert_points(
                [qe.Point(point_id(p.id), p.vector.tolist(), p.payload) for p in points]
            )
        )

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        flt: MemoryFilter | None = None,
        min_score: float | None = None,
    ) -> list[Found]:
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(vector.tolist()),
            filter=_filter(flt),
            with_payload=True,
            score_threshold=min_score,
        )
        return [
            Found(str((p.payload or {}).get("mid", p.id)), float(p.score), p.payload or {})
            for p in self.shard.query(request)
        ]

    def delete(self, ids: Sequence[str]) -> int:
        pids: list[qe.PointId] = [point_id(i) for i in ids]
        existing = len(self.shard.retrieve(pids, with_payload=False, with_vector=False))
        self.shard.update(qe.UpdateOperation.delete_points(pids))
        return existing

    def delete_where(self, flt: MemoryFilter) -> int:
        edge_filter = _filter(flt)
        if edge_filter is None:
            raise ValueError("refusing to delete with an empty filter")
        matched = self.shard.count(qe.CountRequest(exact=True, filter=edge_filter))
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(edge_filter))
        return matched

    def count_by_kind(self) -> dict[str, int]:
        facets = self.shard.facet(qe.FacetRequest("kind", limit=100, exact=True))
        return {str(h.value): int(h.count) for h in facets if h.count}

    def optimize(self) -> bool:
        """Build HNSW for large segments now rather than searching them by brute force."""
        return self.shard.optimize()

    def close(self) -> None:
        if self._shard is not None:
            try:
                self._shard.flush()
                self._shard.close()
            finally:
                self._shard = None
        self._lock.release()
