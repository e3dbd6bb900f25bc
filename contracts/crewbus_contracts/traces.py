"""Trace spans: one record per unit of work (task, round, agent run, model call, tool call).

Spans are written to the bus (`crewbus.traces.<task_id>`) by whichever service did the
work, so a task's whole trace is read back from one subject. Names and attribute keys
follow the OpenTelemetry GenAI conventions (`invoke_agent <role>`, `chat <model>`,
`execute_tool <tool>`, `gen_ai.*`), so an OTLP exporter can map them without renaming.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from crewbus_contracts.base import Message, Model

SpanKind = Literal["task", "round", "agent", "chat", "tool", "memory", "approval", "evaluation"]
SpanStatus = Literal["ok", "error"]
AttributeValue = str | int | float | bool | None

SPAN_KINDS: tuple[SpanKind, ...] = get_args(SpanKind)
EVALUATION_RESULT = "gen_ai.evaluation.result"
"""The OpenTelemetry GenAI event for one score: attributes `gen_ai.evaluation.name`,
`gen_ai.evaluation.score.value`, `gen_ai.evaluation.score.label`,
`gen_ai.evaluation.explanation` (and `error.type` when the scorer could not score)."""


class SpanEvent(Model):
    """Something that happened at one moment inside a span (OpenTelemetry's span event),
    such as `gen_ai.evaluation.result`: a score given to the task's answer."""

    name: str
    time: float
    """Epoch seconds."""
    attributes: dict[str, AttributeValue] = {}


class Span(Message, tag="span"):
    """One finished unit of work, with what went in and what came out (redacted)."""

    trace_id: str
    """32 lowercase hex digits, the W3C trace id shared by every span of the task."""
    span_id: str
    """16 lowercase hex digits; also the message id that makes a re-publish a no-op."""
    name: str
    """`task <id>`, `round <n>`, `invoke_agent <role>`, `chat <model>`,
    `execute_tool <tool>`, `memory_search`, `approval <tool>`, `evaluation <experiment>`."""
    kind: SpanKind
    task_id: str
    service: str
    """The process that wrote the span (`orchestrator`, `executor`, `memory`, ...)."""
    start: float
    """Epoch seconds."""
    end: float
    parent_span_id: str | None = None
    round: int | None = None
    step_id: str | None = None
    status: SpanStatus = "ok"
    error: str | None = None
    attributes: dict[str, AttributeValue] = {}
    """OTel attribute names where one exists (`gen_ai.request.model`, ...), else `crewbus.*`."""
    input: Any = None
    """JSON: the messages sent to a model, a tool's arguments, a memory query."""
    output: Any = None
    """JSON: the model's reply and tool calls, a tool's result, memory hits."""
    events: list[SpanEvent] = []
    """Moments inside the span, oldest first (an `evaluation` span's scores)."""

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end - self.start)


class SpanBatch(Message, tag="span_batch"):
    """Several finished spans of one task in one message: what one piece of work wrote
    (an agent run with its model, tool and memory spans; a task's closing spans).

    Written to the same subject as single spans, with a message id made from the span ids
    it holds, so a re-published batch is stored once; readers take both and keep each span
    id once. A reader older than this contract skips a batch (readers first: see
    docs/traces.md)."""

    spans: list[Span]
    """Oldest first (the order their work ended)."""
