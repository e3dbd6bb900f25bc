"""The memory service on the bus: core NATS request/reply, queue group "memory".

Every request gets its reply or an ErrorReply; a bad request or a failing store never
stops the service. It answers from the moment it is connected: while the store is still
opening, with `memory_starting`, so writers know to retry rather than give up (see
`MemoryClient`). A Qdrant server that is down at start-up is retried on later
requests; an embedded store owned by another process, or built by another embedder,
or an embedder whose packages are missing, is fatal at start-up (waiting would not fix it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from crewbus.bus.codec import BadMessageError, decode
from crewbus.memory.engine import MemoryEngine
from crewbus.memory.errors import (
    EmbedderMismatch,
    EmbedderUnavailable,
    MemoryServiceError,
    MemoryStarting,
    MemoryUnavailable,
    StoreLocked,
)
from crewbus.memory.settings import MemorySettings
from crewbus.telemetry import metrics
from crewbus_contracts import subjects
from crewbus_contracts.errors import ErrorCode, ErrorReply
from crewbus_contracts.memory import (
    MemoryDelete,
    MemoryReply,
    MemorySearch,
    MemoryStats,
    MemoryUpsert,
)

log = logging.getLogger("crewbus.memory")

_ENCODER = msgspec.json.Encoder()
RETRY_OPEN_S = 2.0
"""At most one attempt to (re)open an unavailable store per this many seconds."""


def error_for(exc: Exception) -> ErrorReply:
    """The ErrorReply a caller gets for an exception raised while handling its request."""
    code: ErrorCode
    text = str(exc) or type(exc).__name__
    if isinstance(exc, BadMessageError):
        return exc.reply
    if isinstance(exc, MemoryServiceError):
        code = exc.code
    elif isinstance(exc, msgspec.ValidationError):
        code = "unsupported_schema_version" if "schema_version" in text else "invalid_message"
    elif isinstance(exc, msgspec.DecodeError):
        code, text = "malformed_json", f"malformed JSON: {text}"
    else:
        code, text = "internal_error", f"internal error: {type(exc).__name__}: {text}"
    return ErrorReply(code=code, message=text)


class MemoryService:
    """Subscribes the four memory subjects and answers them from a MemoryEngine."""

    def __init__(
        self, nc: NATS, settings: MemorySettings, engine: MemoryEngine | None = None
    ) -> None:
        """`engine` is for callers that already opened one (the benchmark); else it is
        opened from `settings` at start."""
        self.nc = nc
        self.settings = settings
        self.engine = engine
        self.errors: Counter[str] = Counter()
        """Error replies sent, by code. The metric that counts them is
        `crewbus_bad_input_total` (by reason); this counter is not exported."""
        self._open_error: MemoryServiceError | None = None
        self._opening = False
        self._last_open = 0.0
        self._subs: list[Subscription] = []
        self._last_request = time.monotonic()
        self._optimizer: asyncio.Task[None] | None = None

    async def start(self) -> MemoryService:
        """Subscribe first, then open the store: requests in between get `memory_starting`
        (opening runs in a thread, so the loop answers meanwhile)."""
        handlers: dict[str, Callable[[Msg], Awaitable[None]]] = {
            subjects.MEMORY_UPSERT: self._handler(MemoryUpsert, self._upsert),
            subjects.MEMORY_SEARCH: self._handler(MemorySearch, self._search),
            subjects.MEMORY_DELETE: self._handler(MemoryDelete, self._delete),
            subjects.MEMORY_STATS: self._handler(MemoryStats, self._stats),
        }
        for subject, cb in handlers.items():
            self._subs.append(await self.nc.subscribe(subject, queue=subjects.MEMORY_QUEUE, cb=cb))
        await self.nc.flush()
        if self.engine is None:
            try:
                await self._open()
            except BaseException:
                await self.stop()  # a fatal store error: answer nothing rather than "starting"
                raise
        if self.engine is not None:
            count = sum((await self.engine.stats()).counts.values())
            self.engine.unoptimized_points = count  # build the index once, when idle
        if self.settings.optimize_after > 0:
            self._optimizer = asyncio.get_running_loop().create_task(self._optimize_when_idle())
        log.info("memory service ready: %s", self.settings)
        return self

    async def _optimize_when_idle(self) -> None:
        """Build the embedded search index in quiet moments, never in the middle of a burst."""
        while True:
            await asyncio.sleep(self.settings.optimize_idle_s / 2)
            engine = self.engine
            idle = time.monotonic() - self._last_request > self.settings.optimize_idle_s
            if engine is None or not idle:
                continue
            if engine.unoptimized_points < self.settings.optimize_after:
                continue
            try:
                took = await engine.optimize()
            except Exception:
                log.warning("building the memory index failed", exc_info=True)
                engine.unoptimized_points = 0
                continue
            if took is not None:
                log.info("memory index built in %.1fs", took)

    async def _open(self) -> None:
        self._last_open = time.monotonic()
        self._opening = True
        try:
            self.engine = await MemoryEngine.open(self.settings)
            self._open_error = None
        except (StoreLocked, EmbedderMismatch, EmbedderUnavailable):
            raise
        except MemoryServiceError as exc:
            self._open_error = exc
            log.warning("memory store unavailable, will retry: %s", exc)
        finally:
            self._opening = False

    async def _engine(self) -> MemoryEngine:
        if self.engine is None and self._opening:
            raise MemoryStarting("the memory service is still opening its store")
        if self.engine is None and time.monotonic() - self._last_open >= RETRY_OPEN_S:
            await self._open()
        if self.engine is None:
            raise self._open_error or MemoryUnavailable("memory store is not open")
        return self.engine

    def _handler(
        self, request_type: type[Any], handle: Callable[[Any], Awaitable[MemoryReply]]
    ) -> Callable[[Msg], Awaitable[None]]:
        decoder = msgspec.json.Decoder(request_type)

        async def on_message(msg: Msg) -> None:
            self._last_request = time.monotonic()
            reply: MemoryReply | ErrorReply
            try:
                reply = await handle(decode(msg.data, decoder))
            except Exception as exc:
                reply = error_for(exc)
                self.errors[reply.code] += 1
                reason = exc.reason if isinstance(exc, BadMessageError) else reply.code
                metrics.record_bad_input(reason, msg.subject)
                if reply.code == "internal_error":
                    log.exception("memory request on %s failed", msg.subject)
            if msg.reply:
                try:
                    await msg.respond(_ENCODER.encode(reply))
                except Exception:  # the requester may be gone; nothing else to tell
                    log.warning("could not reply on %s", msg.subject, exc_info=True)

        return on_message

    async def _upsert(self, req: MemoryUpsert) -> MemoryReply:
        return await (await self._engine()).upsert(req)

    async def _search(self, req: MemorySearch) -> MemoryReply:
        started = time.perf_counter()
        hits = await (await self._engine()).search(req)
        backend = self.settings.resolved_backend()
        metrics.record_memory_search(backend, time.perf_counter() - started, len(hits.hits))
        return hits

    async def _delete(self, req: MemoryDelete) -> MemoryReply:
        return await (await self._engine()).delete(req)

    async def _stats(self, req: MemoryStats) -> MemoryReply:
        return await (await self._engine()).stats()

    async def stop(self) -> None:
        """Stop taking requests, then close the store (releasing the embedded lock)."""
        if self._optimizer is not None:
            self._optimizer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._optimizer
            self._optimizer = None
        for sub in self._subs:
            # a closed connection has no subscriptions left anyway
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self.engine is not None:
            await self.engine.close()
            self.engine = None


async def run(nc: NATS, settings: MemorySettings) -> None:
    """Serve memory on `nc` until cancelled (`crewbus serve memory`, started by `crewbus up`)."""
    service = await MemoryService(nc, settings).start()
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await service.stop()
