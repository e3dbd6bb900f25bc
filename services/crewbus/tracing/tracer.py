"""Writing spans to the bus: `async with tracer.span(...) as span:` around a unit of work.

A span is published once, when its work ends, to `crewbus.traces.<task_id>` with its span
id as the JetStream message id (a re-publish is stored once). Inside `async with
tracer.batch():` the spans are held instead and go out together when the block ends, one
message (a SpanBatch) per task, split only to stay under the max payload: one piece of
work costs the bus one trace message, not one per span. Everything a span carries goes
through the redactor first. Tracing is an observer: a failure to write a span is logged
and dropped, never raised into the work it describes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import anyio
import msgspec
from nats.js import JetStreamContext

from crewbus.bus.connection import core_client
from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing.context import span_ids, trace_headers
from crewbus.tracing.draft import SpanDraft
from crewbus.tracing.payload import clip, encode_fitting
from crewbus.tracing.settings import TraceSettings
from crewbus_contracts import subjects
from crewbus_contracts.base import SCHEMA_VERSION
from crewbus_contracts.traces import AttributeValue, Span, SpanBatch, SpanEvent, SpanKind

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
HEADER_ROOM = 1024
"""Bytes of a message's max payload left for its headers (the message id)."""
_BATCH_TAG = str(SpanBatch.__struct_config__.tag)
_BATCH_ENVELOPE = len(msgspec.json.encode(
    {"type": _BATCH_TAG, "schema_version": SCHEMA_VERSION, "spans": []}))


S = TypeVar("S")


class Redacts(Protocol):
    """What the tracer needs of a redactor (crewbus_agents.tools.redact.Redactor fits)."""

    def data(self, value: Any) -> Any: ...

    def may_redact(self, value: Any) -> bool:
        """False only if redacting `value` would change nothing."""
        ...


class ActiveSpan:
    """A span being recorded: set what went in and out; `.context` is for child work."""

    def __init__(
        self, context: TraceContext, parent_span_id: str | None, attributes: Mapping[str, Any]
    ) -> None:
        self.context = context
        self.parent_span_id = parent_span_id
        self.attributes: dict[str, AttributeValue] = dict(attributes)
        self.input: Any = None
        self.output: Any = None
        self.error: str | None = None

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    @property
    def span_id(self) -> str:
        return self.context.span_id

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """NATS headers carrying this span as the parent of the receiver's work."""
        return trace_headers(self.context, extra)

    def set_input(self, value: Any) -> None:
        self.input = value

    def set_output(self, value: Any) -> None:
        self.output = value

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_attributes(self, values: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(values)

    def set_error(self, error: str) -> None:
        """Mark the span failed without raising (a tool error the model will see, ...)."""
        self.error = error


@dataclass(slots=True)
class _Pending:
    """One encoded span waiting in a batch."""

    name: str
    span_id: str
    data: bytes


@dataclass(slots=True)
class _Batch:
    """The spans written inside one `Tracer.batch()`, by task id, in the order written."""

    tracer: Tracer
    open: bool = True
    by_task: dict[str, list[_Pending]] = field(default_factory=dict)


_current_batch: ContextVar[_Batch | None] = ContextVar("crewbus_span_batch", default=None)
"""The batch the running code writes into: a ContextVar, so the work's nested calls and
the child tasks it starts (which copy the context) write into the same one."""


class Tracer:
    """Writes the spans of one service. Share one per process; it holds no per-task state."""

    def __init__(
        self,
        js: JetStreamContext | None,
        service: str,
        redactor: Redacts | None = None,
        settings: TraceSettings | None = None,
    ) -> None:
        self.js = js
        self.service = service
        self.redactor = redactor
        self.settings = settings or TraceSettings()
        self.dropped = 0
        """Spans that could not be written (logged each time)."""
        self.written = 0
        """Spans handed to the bus (stored a moment later when writes are not confirmed)."""

    @asynccontextmanager
    async def span(
        self,
        name: str,
        kind: SpanKind,
        *,
        parent: TraceContext | None,
        task_id: str,
        round: int | None = None,
        step_id: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        context: TraceContext | None = None,
    ) -> AsyncIterator[ActiveSpan]:
        """Record the enclosed work as a child of `parent` (a new root when None).

        `context` fixes the span's own ids (see `task_context`/`round_context`). An
        exception leaving the block marks the span failed and is re-raised unchanged.
        """
        own, parent_id = span_ids(task_id, parent, context)
        active = ActiveSpan(own, parent_id, attributes or {})
        start = time.time()
        failure: str | None = None
        try:
            yield active
        except BaseException as exc:
            failure = (
                "cancelled"
                if isinstance(exc, anyio.get_cancelled_exc_class())
                else (f"{type(exc).__name__}: {exc}")
            )
            raise
        finally:
            error = active.error or failure
            draft = SpanDraft(
                name=name, kind=kind, task_id=task_id, context=own, parent_span_id=parent_id,
                start=start, end=time.time(), round=round, step_id=step_id,
                status="error" if error else "ok", error=error, attributes=active.attributes,
                input=active.input, output=active.output,
            )
            with anyio.CancelScope(shield=True):
                await self.write(draft)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Hold every span this tracer writes inside the block (in nested calls and child
        tasks too) and publish them when it ends, one message per task.

        The block's end waits for the publish (shielded, so a cancelled block still writes
        the spans it finished), so what follows, such as the work's result, is on the wire
        after its spans. A batch inside a batch joins the outer one. A span written after
        the block ended (by a child task still running) is published on its own.
        """
        current = _current_batch.get()
        joined = current is not None and current.tracer is self and current.open
        if joined or self.js is None or not self.settings.batch_writes:
            yield
            return
        batch = _Batch(self)
        token = _current_batch.set(batch)
        try:
            yield
        finally:
            _current_batch.reset(token)
            batch.open = False
            with anyio.CancelScope(shield=True):
                await self._flush(batch)

    async def write(self, draft: SpanDraft) -> Span | None:
        """Publish one finished span (for work timed elsewhere, e.g. a model turn); inside
        `batch()`, add it to the batch.

        Returns the span as written (redacted, clipped), or None if it was not written.
        """
        if not self.settings.enabled or not draft.context.sampled:
            return None
        name, task_id = draft.name, draft.task_id
        try:
            span = Span(
                trace_id=draft.context.trace_id,
                span_id=draft.context.span_id,
                parent_span_id=draft.parent_span_id,
                name=name,
                kind=draft.kind,
                task_id=task_id,
                round=draft.round,
                step_id=draft.step_id,
                service=self.service,
                start=draft.start,
                end=draft.end,
                status=draft.status,
                error=self._clean(draft.error),
                attributes=self._clean(_attributes(draft.attributes)),
                input=self._clean(_builtins(draft.input)),
                output=self._clean(_builtins(draft.output)),
                events=[self._clean_event(e) for e in draft.events],
            )
            data = encode_fitting(span, self.settings.max_span_bytes)
        except Exception:
            self.dropped += 1
            log.warning("span %r of task %s could not be encoded", name, task_id, exc_info=True)
            return None
        if self.js is None:
            return span
        batch = _current_batch.get()
        if batch is not None and batch.tracer is self and batch.open:
            batch.by_task.setdefault(task_id, []).append(_Pending(name, span.span_id, data))
            return span
        written = await self._publish(task_id, data, span.span_id, 1, f"span {name!r}")
        return span if written else None

    async def _flush(self, batch: _Batch) -> None:
        for task_id, pending in batch.by_task.items():
            try:
                await self._flush_task(task_id, pending)
            except Exception:  # an observer: whatever went wrong stays out of the work
                self.dropped += len(pending)
                log.warning("spans of task %s not written", task_id, exc_info=True)

    async def _flush_task(self, task_id: str, pending: list[_Pending]) -> None:
        for chunk in _chunks(pending, self._batch_limit()):
            if len(chunk) == 1:  # a lone span goes as before: any reader takes it
                only = chunk[0]
                await self._publish(task_id, only.data, only.span_id, 1, f"span {only.name!r}")
                continue
            await self._publish(task_id, _encode_batch(chunk), _batch_msg_id(chunk),
                                len(chunk), f"batch of {len(chunk)} spans")

    def _batch_limit(self) -> int:
        """The largest batch message: the setting, and the server's max payload."""
        assert self.js is not None
        server_max = core_client(self.js).max_payload
        return max(1, min(self.settings.max_batch_bytes, server_max) - HEADER_ROOM)

    async def _publish(
        self, task_id: str, data: bytes, msg_id: str, spans: int, what: str
    ) -> bool:
        """Publish one trace message holding `spans` spans; False (logged) if it failed."""
        assert self.js is not None
        try:
            if not self.settings.confirm_writes:
                # Fire and forget: the stream stores it, and the work never waits on a span.
                await core_client(self.js).publish(
                    subjects.traces(task_id), data, headers={MSG_ID: msg_id}
                )
            else:
                with anyio.fail_after(self.settings.publish_timeout_s):
                    await self.js.publish(
                        subjects.traces(task_id),
                        data,
                        timeout=self.settings.publish_timeout_s,
                        headers={MSG_ID: msg_id},
                    )
        except Exception as exc:
            self.dropped += spans
            # The exception text may quote the payload; only its type is logged.
            log.warning("%s of task %s not written: %s", what, task_id, type(exc).__name__)
            return False
        self.written += spans
        return True

    def redact(self, value: S) -> S:
        """`value` with secrets and configured patterns masked; a Struct keeps its type
        (events get the same redaction as spans). A Struct with nothing to redact is
        returned as it is, without the round trip through builtins."""
        if self.redactor is None:
            return value
        if isinstance(value, msgspec.Struct):
            if not self.redactor.may_redact(value):
                return value
            cleaned = self.redactor.data(msgspec.to_builtins(value))
            return msgspec.convert(cleaned, type(value))
        return self.redactor.data(value)

    def _clean_event(self, event: SpanEvent) -> SpanEvent:
        return SpanEvent(name=event.name, time=event.time,
                         attributes=self._clean(_attributes(event.attributes)))

    def _clean(self, value: Any) -> Any:
        # Redact before cutting: a cut could split a secret so no pattern matches it.
        if self.redactor is not None:
            value = self.redactor.data(value)
        return clip(value, self.settings.max_payload_chars)


def _builtins(value: Any) -> Any:
    """JSON-ready builtins (Structs, dataclasses, enums ...); anything else as its str()."""
    if value is None:
        return None
    return msgspec.to_builtins(value, str_keys=True, enc_hook=str)


def _attributes(values: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Flat OTel-style attributes: None (unset) is left out, other values become text."""
    out: dict[str, AttributeValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


def _chunks(pending: list[_Pending], limit: int) -> Iterator[list[_Pending]]:
    """Consecutive runs of spans whose batch message stays within `limit` bytes (a span
    too big for any batch goes alone)."""
    chunk: list[_Pending] = []
    size = _BATCH_ENVELOPE
    for item in pending:
        grown = size + len(item.data) + (1 if chunk else 0)
        if chunk and grown > limit:
            yield chunk
            chunk, grown = [], _BATCH_ENVELOPE + len(item.data)
        chunk.append(item)
        size = grown
    if chunk:
        yield chunk


def _encode_batch(chunk: list[_Pending]) -> bytes:
    """A SpanBatch of spans already encoded (and clipped) one by one: not encoded again."""
    return msgspec.json.encode({"type": _BATCH_TAG, "schema_version": SCHEMA_VERSION,
                                "spans": [msgspec.Raw(p.data) for p in chunk]})


def _batch_msg_id(chunk: list[_Pending]) -> str:
    """The same spans make the same id, so a re-published batch is stored once."""
    digest = hashlib.sha256("\n".join(p.span_id for p in chunk).encode()).hexdigest()
    return f"spans-{digest[:32]}"
