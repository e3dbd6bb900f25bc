"""VectorStore on Qdrant Edge: Qdrant's own engine (HNSW, payload indexes) in process.

The shard lives in `<data dir>/<collection>`; which embedder built it is kept beside it
in `crewbus-collection.json`, since a shard has no collection metadata of its own.

A hybrid shard (new ones, with the hashed embedder; see MemorySettings.uses_hybrid) keeps
two vectors per memory: the embedder's
dense vector and a BM25 sparse vector (Qdrant's IDF modifier, Edge's own tokenizer). A
text query is ranked by both, fused in the shard with reciprocal rank fusion; hits are
still scored by cosine, so `min_score` and near-duplicates keep their meaning. Measured by
bench/embedder_quality.py: with the hashed embedder, fusion lifts paraphrase recall@5 from
0.42 to 0.58; with MiniLM it lowers recall@5 on the public Lee set (0.72 to 0.65).

New shards are built for a million memories (`EdgeTuning`; docs/embedders.md, Scale): a
lighter HNSW graph (`ef_construct` 64) over an int8 scalar-quantized copy of the vectors
builds 1M in ~300 CPU s instead of ~2,800, and a search beam that widens with the shard's
size buys the recall back (0.97 at 1M with `hnsw_ef` 512, 2.5 ms p50). An existing shard
keeps the graph it was built with; the beam applies to every shard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
HYBRID_LAYOUT = "dense+bm25-v1"
DENSE, SPARSE = "dense", "bm25"
FUSION_DEPTH = 20
"""Candidates each ranking contributes to the fusion (at least k)."""


@dataclass(frozen=True)
class EdgeTuning:
    """How a new shard's dense index is built, and how wide a search looks (the
    `CREWBUS_MEMORY_EDGE_*` settings)."""

    ef_construct: int = 64
    """HNSW build beam of new shards (Qdrant's default 100: ~10x the build CPU at 1M
    together with int8 off)."""
    int8: bool = True
    """New shards keep an int8 scalar-quantized copy of the vectors in RAM: the graph is
    built and searched on it (rescored with the originals), a quarter of the distance cost."""
    search_ef: int | None = 128
    """Search beam below `large_from` points (None: Qdrant's default, the graph's
    ef_construct)."""
    large_ef: int = 512
    """Search beam from `large_from` points on."""
    large_from: int = 200_000

    def beam(self, points: int) -> int | None:
        return self.large_ef if points >= self.large_from else self.search_ef

    def dense_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "hnsw_config": qe.HnswIndexConfig(
                m=16, ef_construct=self.ef_construct, full_scan_threshold=10_000
            )
        }
        if self.int8:
            options["quantization_config"] = qe.ScalarQuantizationConfig(
                qe.ScalarType.Int8, quantile=0.99, always_ram=True
            )
        return options


def _filter(flt: MemoryFilter | None) -> qe.Filter | None:
    conds = filter_conditions(flt)
    if not conds:
        return None
    return qe.Filter(must=[qe.FieldCondition(k, match=qe.MatchValue(v)) for k, v in conds.items()])


def _found(point: qe.ScoredPoint, score: float) -> Found:
    payload = point.payload or {}
    return Found(str(payload.get("mid", point.id)), score, payload)


class EdgeStore:
    backend = "edge"
    inline_reads = True
    """Searches take well under a millisecond even at 50k memories (HNSW), so the service
    runs them on the event loop instead of paying ~0.4 ms for a worker thread."""

    def __init__(
        self, data_dir: Path, collection: str, hybrid: bool = True, lock: DirLock | None = None,
        dense_options: dict[str, Any] | None = None, tuning: EdgeTuning | None = None,
    ) -> None:
        """`lock`: the data dir's lock, when the caller already holds it (reindex opens two
        collections of one dir); else this store takes it, and releases it on close.
        `dense_options`: more `EdgeVectorParams` for a new shard's dense vector (HNSW
        config, quantization, on-disk storage) over `tuning`'s, for bench/memory_backends.py's
        scale runs."""
        self.tuning = tuning or EdgeTuning()
        self.dense_options = {**self.tuning.dense_options(), **(dense_options or {})}
        self.data_dir = data_dir
        self.collection = collection
        self.path = data_dir / collection
        self.hybrid = hybrid
        """For a new shard: keep BM25 beside the dense vector. An existing shard keeps
        the layout it was created with."""
        self._owns_lock = lock is None
        self._lock = lock or DirLock(data_dir).acquire()
        self._shard: qe.EdgeShard | None = None
        self._bm25 = qe.Bm25()

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
                self.hybrid = meta.get("layout") == HYBRID_LAYOUT
                self._shard = qe.EdgeShard.load(str(self.path))
            else:
                self._shard = qe.EdgeShard.create(str(self.path), self._config(dimension))
                for field in INDEXED_FIELDS:
                    self._shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                    )
                meta = {"embedder": embedder_id, "dimension": dimension}
                if self.hybrid:
                    meta["layout"] = HYBRID_LAYOUT
                meta_path.write_text(json.dumps(meta))
        except EmbedderMismatch:
            raise
        except Exception as exc:
            self.close()
            raise MemoryUnavailable(f"cannot open Qdrant Edge shard at {self.path}: {exc}") from exc

    def _config(self, dimension: int) -> qe.EdgeConfig:
        dense = qe.EdgeVectorParams(
            size=dimension, distance=qe.Distance.Cosine, **self.dense_options
        )
        if not self.hybrid:
            return qe.EdgeConfig(vectors=dense)
        return qe.EdgeConfig(
            vectors={DENSE: dense},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        self.shard.update(
            qe.UpdateOperation.upsert_points([self._point(p) for p in points])
        )

    def _point(self, point: StoredPoint) -> qe.Point:
        dense = point.vector.tolist()
        if not self.hybrid:
            return qe.Point(point_id(point.id), dense, point.payload)
        sparse = self._bm25.embed_document(str(point.payload.get("text", "")))
        return qe.Point(point_id(point.id), {DENSE: dense, SPARSE: sparse}, point.payload)

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        flt: MemoryFilter | None = None,
        min_score: float | None = None,
        text: str | None = None,
    ) -> list[Found]:
        sparse = self._bm25.embed_query(text) if self.hybrid and text else None
        if sparse is None or not sparse.indices:
            request = qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(vector.tolist(), using=DENSE if self.hybrid else None),
                filter=_filter(flt),
                with_payload=True,
                score_threshold=min_score,
                params=self.search_params(),
            )
            return [_found(p, float(p.score)) for p in self.shard.query(request)]
        return self._fused(vector, sparse, k, flt, min_score)

    def _fused(
        self, vector: npt.NDArray[np.float32], sparse: qe.SparseVector, k: int,
        flt: MemoryFilter | None, min_score: float | None,
    ) -> list[Found]:
        """Dense and BM25 rankings fused in the shard (RRF); scored by cosine, so a BM25-only
        candidate below `min_score` is dropped like any other."""
        depth = max(FUSION_DEPTH, k)
        request = qe.QueryRequest(
            limit=k,
            prefetches=[
                qe.Prefetch(limit=depth, query=qe.Query.Nearest(vector.tolist(), using=DENSE),
                            score_threshold=min_score, params=self.search_params()),
                qe.Prefetch(limit=depth, query=qe.Query.Nearest(sparse, using=SPARSE)),
            ],
            query=qe.Fusion.Rrf(k=60),  # type: ignore[arg-type]  # the stub misses Fusion
            filter=_filter(flt),
            with_payload=True,
            with_vector=True,
        )
        found = []
        for p in self.shard.query(request):
            vectors = p.vector
            assert isinstance(vectors, dict), "a hybrid shard returns named vectors"
            cosine = float(np.dot(vector, np.asarray(vectors[DENSE], dtype=np.float32)))
            if min_score is None or cosine >= min_score:
                found.append(_found(p, cosine))
        return found

    def search_params(self) -> qe.SearchParams | None:
        """The HNSW beam for the shard's size now (counting costs ~4 us)."""
        ef = self.tuning.beam(self.shard.info().points_count)
        return qe.SearchParams(hnsw_ef=ef) if ef else None

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
        if self._owns_lock:
            self._lock.release()
