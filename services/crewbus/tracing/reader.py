"""Reading a task's trace back from the stream, and arranging it as a tree.

Messages are fetched one by one with "next message on this subject from sequence N"
(a stateless direct read: no consumer is created, so a read-only CLI leaves nothing
behind), until the subject has no more messages or the bound is reached. A message is one
span or a batch of them (`SpanBatch`, what `Tracer.batch()` writes); both are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from crewbus.bus.connection import core_client
from crewbus_contracts import subjects
from crewbus_contracts.subjects import TRACES_STREAM
from crewbus_contracts.traces import Span, SpanBatch

log = logging.getLogger(__name__)

DEFAULT_MAX_SPANS = 50_000

_decoder: msgspec.json.Decoder[Span | SpanBatch] = msgspec.json.Decoder(Span | SpanBatch)


async def read_trace(
    js: JetStreamContext, task_id: str, max_spans: int = DEFAULT_MAX_SPANS
) -> list[Span]:
    """Every stored span of `task_id` (at most `max_spans`), in the order they were written.

    A message that is neither a valid span nor a valid batch of spans is skipped with a
    warning; a span stored twice (same span id, alone or in batches) is kept once. A
    missing stream reads as an empty trace.
    """
    # Spans are published without waiting for acks: a round trip first makes this
    # connection's own earlier writes visible (read your writes).
    await core_client(js).flush()
    subject = subjects.traces(task_id)
    spans: list[Span] = []
    seen: set[str] = set()
    seq = 1
    while len(spans) < max_spans:
        try:
            msg = await js.get_msg(TRACES_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        if msg.seq is None:
            break
        seq = msg.seq + 1
        try:
            record = _decoder.decode(msg.data or b"")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.warning("skipping unreadable span at %s seq %d: %s", subject, msg.seq, exc)
            continue
        for span in record.spans if isinstance(record, SpanBatch) else (record,):
            if span.span_id not in seen and len(spans) < max_spans:
                seen.add(span.span_id)
                spans.append(span)
    return spans


@dataclass(slots=True)
class TraceNode:
    span: Span
    children: list[TraceNode] = field(default_factory=list)


def build_tree(spans: list[Span]) -> list[TraceNode]:
    """Spans linked to their parents, siblings sorted by start time.

    A span whose parent is not in the trace (lost, expired, or written by a crashed
    process) is a root, and so is one caught in a parent cycle: nothing is dropped.
    """
    nodes: dict[str, TraceNode] = {}
    for span in spans:
        nodes.setdefault(span.span_id, TraceNode(span))
    roots: list[TraceNode] = []
    for node in nodes.values():
        parent_id = node.span.parent_span_id
        parent = nodes.get(parent_id) if parent_id and parent_id != node.span.span_id else None
        (parent.children if parent is not None else roots).append(node)
    reached = _reachable(roots)
    # Members of a parent cycle are reachable from no root: detach them, one per cycle.
    for node in nodes.values():
        if id(node) not in reached:
            parent = nodes.get(node.span.parent_span_id or "")
            if parent is not None and node in parent.children:
                parent.children.remove(node)
            roots.append(node)
            reached |= _reachable([node])
    _sort(roots)
    return roots


def walk(nodes: list[TraceNode]) -> list[Span]:
    """The spans of a tree in depth-first order (the order `render_tree` prints them)."""
    out: list[Span] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        out.append(node.span)
        stack.extend(reversed(node.children))
    return out


def _reachable(roots: list[TraceNode]) -> set[int]:
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(node.children)
    return seen


def _sort(roots: list[TraceNode]) -> None:
    key = _order_key
    roots.sort(key=key)
    stack = list(roots)
    while stack:
        node = stack.pop()
        node.children.sort(key=key)
        stack.extend(node.children)


def _order_key(node: TraceNode) -> tuple[float, float, str]:
    return (node.span.start, node.span.end, node.span.span_id)
