"""The one interface the memory service stores through, whatever Qdrant is behind it.

Methods are synchronous (both engines are): the service calls them from a worker thread.
Ids given to a store are the caller's strings; a store maps them to Qdrant point ids
with `point_id` and keeps the original in the payload under `mid`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from crewbus_contracts.memory import MemoryFilter

INDEXED_FIELDS = ("kind", "task_id", "source")
"""Payload fields with a keyword index: the ones searches filter on."""

_NAMESPACE = uuid.UUID("6f0e4c1e-6a55-4c8f-9d0e-9a9f7f3f1c52")


def point_id(memory_id: str) -> str:
    """A memory id as a Qdrant point id (a UUID): stable, so an upsert replaces."""
    try:
        return str(uuid.UUID(memory_id))
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, memory_id))


class StoredPoint(msgspec.Struct, frozen=True):
    id: str
    vector: npt.NDArray[np.float32]
    payload: dict[str, Any]


class Found(msgspec.Struct, frozen=True):
    id: str
    score: float
    payload: dict[str, Any]


def filter_conditions(flt: MemoryFilter | None) -> dict[str, str]:
    """The non-empty fields of a filter, as exact-match conditions."""
    if flt is None:
        return {}
    return {f: v for f in INDEXED_FIELDS if (v := getattr(flt, f)) is not None}


class VectorStore(Protocol):
    """A Qdrant collection of memories: one dense cosine vector per point plus payload."""

    backend: str
    """"edge", "local" or "server", reported by stats."""

    def ensure_collection(self, dimension: int, embedder_id: str) -> None:
        """Create the collection (vector size, cosine, payload indexes) or check it was
        built by the same embedder; raise EmbedderMismatch otherwise."""
        ...

    def upsert(self, points: Sequence[StoredPoint]) -> None: ...

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        flt: MemoryFilter | None = None,
        min_score: float | None = None,
        text: str | None = None,
    ) -> list[Found]:
        """The k nearest points, best first, scored by cosine. `text` is the query's words,
        for a store that also ranks lexically and fuses both (hybrid); others ignore it."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by memory id; returns how many existed."""
        ...

    def delete_where(self, flt: MemoryFilter) -> int:
        """Delete every point matching the filter; returns how many matched."""
        ...

    def count_by_kind(self) -> dict[str, int]: ...

    def close(self) -> None: ...
