"""VectorStore on qdrant-client: a Qdrant server (url, api key) or local mode (path).

Local mode is qdrant-client's pure-Python engine: exact brute-force search, fine for a
few thousand memories. The server is how memory scales to several memory services.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient
from qdrant_client import models as qm

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


def _filter(flt: MemoryFilter | None) -> qm.Filter | None:
    conds = filter_conditions(flt)
    if not conds:
        return None
    return qm.Filter(
        must=[qm.FieldCondition(key=k, match=qm.MatchValue(value=v)) for k, v in conds.items()]
    )


class ClientStore:
    """One collection through qdrant-client; `backend` is "server" or "local"."""

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (server) or path (local mode)")
        self.collection = collection
        self.backend = "server" if url else "local"
        self._where = url if url else str(path)
        self._lock: DirLock | None = None
        if path is not None:
            self._lock = DirLock(path).acquire()
        try:
            if url:
                self.client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout_s))
            else:
                self.client = QdrantClient(path=str(path))
        except Exception as exc:
            self.close()
            raise MemoryUnavailable(f"cannot open Qdrant at {self._where}: {exc}") from exc

    def _unavailable(self, exc: Exception) -> MemoryUnavailable:
        return MemoryUnavailable(f"Qdrant at {self._where} failed: {type(exc).__name__}: {exc}")

    def ensure_collection(self, dimension: int, embedder_id: str) -> None:
        try:
            if self.client.collection_exists(self.collection):
                info = self.client.get_collection(self.collection)
                meta = info.config.metadata or {}
                params = info.config.params.vectors
                size = params.size if isinstance(params, qm.VectorParams) else -1
                stored = str(meta.get("embedder", "unknown (not made by crewbus)"))
                if stored != embedder_id or size != dimension:
                    raise EmbedderMismatch(self.collection, stored, size, embedder_id, dimension)
                return
            self.client.create_collection(
                self.collection,
                vectors_config=qm.VectorParams(size=dimension, distance=qm.Distance.COSINE),
                metadata={"embedder": embedder_id, "dimension": dimension, "owner": "crewbus"},
            )
            if self.backend == "server":  # local mode ignores payload indexes (and warns)
                for field in INDEXED_FIELDS:
                    self.client.create_payload_index(
                        self.collection, field, qm.PayloadSchemaType.KEYWORD
                    )
        except EmbedderMismatch:
            raise
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        batch = [
            qm.PointStruct(id=point_id(p.id), vector=p.vector.tolist(), payload=p.payload)
            for p in points
        ]
        try:
            self.client.upsert(self.collection, batch, wait=True)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        flt: MemoryFilter | None = None,
        min_score: float | None = None,
        text: str | None = None,  # dense only: lexical fusion is an Edge feature here
    ) -> list[Found]:
        try:
            reply = self.client.query_points(
                self.collection,
                query=vector.tolist(),
                limit=k,
                query_filter=_filter(flt),
                with_payload=True,
                score_threshold=min_score,
            )
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return [
            Found(str((p.payload or {}).get("mid", p.id)), float(p.score), p.payload or {})
            for p in reply.points
        ]

    def delete(self, ids: Sequence[str]) -> int:
        pids: list[qm.ExtendedPointId] = [point_id(i) for i in ids]
        try:
            existing = len(self.client.retrieve(self.collection, pids, with_payload=False))
            self.client.delete(self.collection, qm.PointIdsList(points=pids), wait=True)
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return existing

    def delete_where(self, flt: MemoryFilter) -> int:
        qfilter = _filter(flt)
        if qfilter is None:
            raise ValueError("refusing to delete with an empty filter")
        try:
            matched = self.client.count(self.collection, count_filter=qfilter, exact=True).count
            self.client.delete(self.collection, qm.FilterSelector(filter=qfilter), wait=True)
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return matched

    def count_by_kind(self) -> dict[str, int]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                facets = self.client.facet(self.collection, "kind", limit=100, exact=True)
        except Exception as exc:
            raise self._unavailable(exc) from exc
        return {str(h.value): int(h.count) for h in facets.hits if h.count}

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            # closing a broken connection must not mask the real error
            with contextlib.suppress(Exception):
                client.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
