"""Trace context for a task: carried in NATS headers, derived from the task when absent.

A task's trace id is a hash of its id, so every service (and any orchestrator replica
that picks the task up after a restart) agrees on it without being told. The task and
round spans get derived span ids too, so children written by different processes at
different times still find their parents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from crewbus.telemetry.tracecontext import (
    TRACEPARENT,
    TraceContext,
    from_headers,
    inject,
    new_span_id,
)
from crewbus_contracts import TaskState


def trace_headers(ctx: TraceContext, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """`headers` (or a new dict) plus the `traceparent` of `ctx`; pass to `js.publish`."""
    return inject(dict(headers) if headers else None, ctx)


def context_from_headers(headers: Mapping[str, str] | None) -> TraceContext | None:
    """The sender's context from a received message's headers; None if absent or invalid."""
    return from_headers(headers)


def task_trace_id(task_id: str) -> str:
    """The trace id of a task: the same in every process, without coordination."""
    return _hex(f"trace:{task_id}", 16)


def trace_id_of(state: TaskState) -> str:
    """The trace id a task's state names; derived for a state stored before the
    orchestrator filled `TaskState.trace_id` in (those hold "")."""
    return state.trace_id or task_trace_id(state.task_id)


def task_context(task_id: str) -> TraceContext:
    """The context of the `task <id>` span: parent of the task's rounds."""
    return TraceContext(task_trace_id(task_id), _hex(f"task:{task_id}", 8))


def round_context(task_id: str, round: int) -> TraceContext:
    """The context of the `round <n>` span: parent of that round's agent runs."""
    return TraceContext(task_trace_id(task_id), _hex(f"round:{task_id}:{round}", 8))


def span_ids(
    task_id: str, parent: TraceContext | None, own: TraceContext | None = None
) -> tuple[TraceContext, str | None]:
    """A new span's own context and its parent's span id.

    Under `parent` when there is one; otherwise a root in the task's trace. `own` fixes
    the span's ids (for the derived task and round spans).
    """
    parent_id = parent.span_id if parent is not None else None
    if own is not None:
        return own, parent_id
    if parent is not None:
        return parent.child(), parent_id
    return TraceContext(task_trace_id(task_id), new_span_id()), None


def _hex(seed: str, nbytes: int) -> str:
    value = hashlib.sha256(seed.encode()).hexdigest()[: nbytes * 2]
    # W3C forbids the all-zero id; a sha256 prefix of zeros is astronomically unlikely,
    # but the rule is cheap to keep.
    return value if int(value, 16) else "1".rjust(nbytes * 2, "0")


__all__ = [
    "TRACEPARENT",
    "context_from_headers",
    "round_context",
    "span_ids",
    "task_context",
    "task_trace_id",
    "trace_headers",
    "trace_id_of",
]
