"""Memory requests and replies: core NATS request/reply on `crewbus.memory.*`.

Memory calls are queries, not durable work, so they do not go through JetStream: a
caller that gets no reply simply asks again. Every request is answered by its reply
type below or by an `ErrorReply`.
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from crewbus_contracts.base import Message, Model

MemoryKind = Literal["finding", "result", "critique", "document", "task"]
MEMORY_KINDS: tuple[MemoryKind, ...] = get_args(MemoryKind)

MAX_K = 50
MAX_RECORDS = 1000
"""Largest batch of records in one MemoryUpsert; bigger loads are sent in several."""


class MemoryRecord(Model):
    """One thing to remember. Without `id`, one is derived from kind + normalized text,
    so writing the same text twice keeps one memory."""

    text: str
    kind: MemoryKind
    id: str | None = None
    task_id: str | None = None
    source: str | None = None
    """Where it came from: a file path, a URL, an agent step."""
    position: int | None = None
    """Order of the chunk inside `source`."""
    metadata: dict[str, str] = {}
    vector: list[float] | None = None
    """A precomputed embedding; its size must match the service's embedder."""

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("text must not be empty")
        if self.id is not None and not self.id.strip():
            raise ValueError("id must not be blank")


class MemoryFilter(Model):
    """Exact-match conditions, all of which must hold; an empty filter matches everything."""

    kind: MemoryKind | None = None
    task_id: str | None = None
    source: str | None = None

    def is_empty(self) -> bool:
        return self.kind is None and self.task_id is None and self.source is None


class MemoryHit(Model):
    """A memory found by a search, with its similarity score (higher is closer)."""

    id: str
    score: float
    kind: MemoryKind
    text: str
    source: str | None = None
    task_id: str | None = None
    position: int | None = None
    metadata: dict[str, str] = {}


class MemoryUpsert(Message, tag="memory_upsert"):
    """Remember these records (insert or replace by id); near-duplicates are skipped."""

    records: list[MemoryRecord]
    skip_near_duplicates: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.records:
            raise ValueError("records must not be empty")
        if len(self.records) > MAX_RECORDS:
            raise ValueError(f"at most {MAX_RECORDS} records per upsert, got {len(self.records)}")


class MemorySearch(Message, tag="memory_search"):
    """Find the `k` memories closest to `query` (or to `vector`), within `filter`."""

    query: str = ""
    k: int = 5
    filter: MemoryFilter = msgspec.field(default_factory=MemoryFilter)
    vector: list[float] | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vector is None and not self.query.strip():
            raise ValueError("query must not be empty")
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {self.k}")


class MemoryDelete(Message, tag="memory_delete"):
    """Forget memories by id, or every memory matching a non-empty filter."""

    ids: list[str] = []
    filter: MemoryFilter | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ids and (self.filter is None or self.filter.is_empty()):
            raise ValueError("give ids or a non-empty filter; deleting everything is refused")


class MemoryStats(Message, tag="memory_stats"):
    """Ask what is stored and how."""


class MemoryUpserted(Message, tag="memory_upserted"):
    """Ids stored, in request order; `duplicates` maps a skipped record's id to the
    id of the memory it duplicates."""

    ids: list[str]
    duplicates: dict[str, str] = {}


class MemoryHits(Message, tag="memory_hits"):
    hits: list[MemoryHit]


class MemoryDeleted(Message, tag="memory_deleted"):
    deleted: int
    """How many matched before deletion (ids not found are not counted)."""


class MemoryStatsReply(Message, tag="memory_stats_reply"):
    counts: dict[str, int]
    """Memories per kind."""
    total: int
    backend: str
    embedder: str
    dimension: int
    collection: str


MemoryRequest = MemoryUpsert | MemorySearch | MemoryDelete | MemoryStats
MemoryReply = MemoryUpserted | MemoryHits | MemoryDeleted | MemoryStatsReply
