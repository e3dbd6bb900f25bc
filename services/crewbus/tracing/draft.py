"""What a writer hands the tracer: a finished span before it is redacted, clipped and sent,
and the place in a task's trace where a span goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing.context import span_ids
from crewbus_contracts.traces import AttributeValue, SpanEvent, SpanKind, SpanStatus


@dataclass(frozen=True, slots=True)
class SpanPlace:
    """Where a span sits: under `parent` (a root of the task's trace when None), for a
    task and, when known, its round and step."""

    task_id: str
    parent: TraceContext | None = None
    round: int | None = None
    step_id: str | None = None

    def ids(self) -> tuple[TraceContext, str | None]:
        """A new span's own context here, and its parent's span id."""
        return span_ids(self.task_id, self.parent)


@dataclass(frozen=True, kw_only=True, slots=True)
class SpanDraft:
    """One finished span as its writer knows it; `Tracer.write` stamps the service on it,
    redacts and clips it, then publishes it."""

    name: str
    kind: SpanKind
    task_id: str
    context: TraceContext
    """The span's own trace and span id."""
    parent_span_id: str | None
    start: float
    end: float
    round: int | None = None
    step_id: str | None = None
    status: SpanStatus = "ok"
    error: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    input: Any = None
    output: Any = None
    events: Sequence[SpanEvent] = ()
