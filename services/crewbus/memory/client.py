"""MemoryClient: how agents remember and recall, over core NATS request/reply."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import anyio
import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, TimeoutError

from crewbus_contracts import subjects
from crewbus_contracts.errors import ErrorReply
from crewbus_contracts.memory import (
    MAX_RECORDS,
    MemoryDelete,
    MemoryDeleted,
    MemoryFilter,
    MemoryHit,
    MemoryHits,
    MemoryKind,
    MemoryRecord,
    MemorySearch,
    MemoryStats,
    MemoryStatsReply,
    MemoryUpsert,
    MemoryUpserted,
)

R = TypeVar("R", MemoryUpserted, MemoryHits, MemoryDeleted, MemoryStatsReply)
_ENCODER = msgspec.json.Encoder()
log = logging.getLogger(__name__)

WRITE_PATIENCE_S = 30.0
"""How long a write waits for a memory service that answers `memory_starting`."""
RETRY_FIRST_S, RETRY_MAX_S = 0.1, 2.0


class MemoryClientError(Exception):
    """The memory service refused a request (or none answered); `code` is an ErrorCode."""

    def __init__(self, code: str, message: str, *, no_responders: bool = False) -> None:
        super().__init__(f"memory {code}: {message}")
        self.code = code
        self.message = message
        self.no_responders = no_responders
        """No memory service was subscribed at all (not started yet, or not running)."""


class MemoryClient:
    """Typed calls to the memory service. Agents never open Qdrant themselves.

    Writes (upsert, delete) that find the service still opening its store are retried with
    backoff for up to `write_patience_s`, so the first task after `crewbus up` is
    remembered. Searches are not: a recall that finds nothing is better than a slow step.
    No service at all (no responders) fails at once, as memory is optional; with
    `absent_s`, the searches of the next `absent_s` seconds fail at once without being sent
    (a crew without memory asks ~7 times a task, each a request and a no-responders reply).
    """

    def __init__(
        self, nc: NATS, timeout_s: float = 10.0, write_patience_s: float = WRITE_PATIENCE_S,
        service_patience_s: float = 0.0, absent_s: float = 0.0,
    ) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        self.write_patience_s = write_patience_s
        self.service_patience_s = service_patience_s
        """How long a write waits for a memory service to appear at all: the CLI's, right
        after `crewbus up`, waits; an agent's does not (0: no service is an error now)."""
        self.absent_s = absent_s
        self._absent_until = 0.0
        """Until then (monotonic) no memory service is assumed: the last request found none."""

    async def _write(self, subject: str, request: msgspec.Struct, reply_type: type[R]) -> R:
        """`_request`, retried while the service answers that it is starting."""
        started = time.monotonic()
        delay = RETRY_FIRST_S
        while True:
            try:
                return await self._request(subject, request, reply_type)
            except MemoryClientError as exc:
                patience = (self.write_patience_s if exc.code == "memory_starting"
                            else self.service_patience_s if exc.no_responders else 0.0)
                if time.monotonic() + delay > started + patience:
                    raise
                log.info("memory service is starting; retrying %s in %.1fs", subject, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _request(
        self, subject: str, request: msgspec.Struct, reply_type: type[R], *,
        skippable: bool = False,
    ) -> R:
        """One request; a `skippable` one (a search) is not sent while the last request
        found no service, for `absent_s`. Writes are always sent: a memory service that
        came up a moment ago must get the first task's findings."""
        if skippable and self.service_patience_s <= 0 and time.monotonic() < self._absent_until:
            raise MemoryClientError(
                "memory_unavailable", f"no memory service answered on {subject} in the "
                f"last {self.absent_s:g}s", no_responders=True,
            )
        try:
            msg = await self.nc.request(subject, _ENCODER.encode(request), timeout=self.timeout_s)
        except NoRespondersError:
            if self.absent_s > 0:
                self._absent_until = time.monotonic() + self.absent_s
            raise MemoryClientError(
                "memory_unavailable", f"no memory service answers on {subject}",
                no_responders=True,
            ) from None
        except TimeoutError:
            raise MemoryClientError(
                "memory_unavailable", f"no reply on {subject} within {self.timeout_s}s"
            ) from None
        reply = msgspec.json.decode(msg.data, type=reply_type | ErrorReply)
        if isinstance(reply, ErrorReply):
            raise MemoryClientError(reply.code, reply.message)
        return reply

    async def upsert(
        self, records: Sequence[MemoryRecord], *, skip_near_duplicates: bool = True
    ) -> MemoryUpserted:
        """Store records (in as many requests as their size needs); ids come back in order."""
        ids: list[str] = []
        duplicates: dict[str, str] = {}
        for batch in self._batches(records):
            request = MemoryUpsert(records=batch, skip_near_duplicates=skip_near_duplicates)
            reply = await self._write(subjects.MEMORY_UPSERT, request, MemoryUpserted)
            ids.extend(reply.ids)
            duplicates.update(reply.duplicates)
        return MemoryUpserted(ids=ids, duplicates=duplicates)

    def _batches(self, records: Sequence[MemoryRecord]) -> Iterable[list[MemoryRecord]]:
        """Split so each request stays under MAX_RECORDS and the server's max payload
        (records that carry vectors are large: ~8 KB of JSON for 384 floats)."""
        limit = int(self.nc.max_payload or 1024 * 1024) * 9 // 10
        batch: list[MemoryRecord] = []
        size = 0
        for record in records:
            record_size = len(_ENCODER.encode(record)) + 1
            if batch and (len(batch) >= MAX_RECORDS or size + record_size > limit):
                yield batch
                batch, size = [], 0
            batch.append(record)
            size += record_size
        if batch:
            yield batch

    async def remember(
        self,
        text: str,
        kind: MemoryKind,
        *,
        task_id: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Store one memory; returns its id (the existing one if it is a near-duplicate)."""
        record = MemoryRecord(
            text=text, kind=kind, task_id=task_id, source=source, metadata=dict(metadata or {})
        )
        return (await self.upsert([record])).ids[0]

    async def search(
        self,
        query: str,
        k: int = 5,
        *,
        kind: MemoryKind | None = None,
        task_id: str | None = None,
        source: str | None = None,
        min_score: float | None = None,
    ) -> list[MemoryHit]:
        """The k memories closest to `query`, best first, optionally filtered."""
        request = MemorySearch(
            query=query,
            k=k,
            filter=MemoryFilter(kind=kind, task_id=task_id, source=source),
            min_score=min_score,
        )
        return (await self._request(subjects.MEMORY_SEARCH, request, MemoryHits,
                                     skippable=True)).hits

    async def search_vector(
        self, vector: Iterable[float], k: int = 5, *, kind: MemoryKind | None = None
    ) -> list[MemoryHit]:
        request = MemorySearch(vector=list(vector), k=k, filter=MemoryFilter(kind=kind))
        return (await self._request(subjects.MEMORY_SEARCH, request, MemoryHits,
                                     skippable=True)).hits

    async def delete(
        self,
        ids: Sequence[str] = (),
        *,
        kind: MemoryKind | None = None,
        task_id: str | None = None,
        source: str | None = None,
    ) -> int:
        """Forget by ids and/or by filter; returns how many were deleted."""
        flt = MemoryFilter(kind=kind, task_id=task_id, source=source)
        request = MemoryDelete(ids=list(ids), filter=None if flt.is_empty() else flt)
        return (await self._write(subjects.MEMORY_DELETE, request, MemoryDeleted)).deleted

    async def stats(self) -> MemoryStatsReply:
        return await self._request(subjects.MEMORY_STATS, MemoryStats(), MemoryStatsReply)
