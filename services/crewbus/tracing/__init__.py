"""Traces on the bus: spans written by every service, read back by `crewbus trace`.

See docs/traces.md for the span format and settings.
"""

from crewbus.tracing.context import (
    context_from_headers,
    round_context,
    span_ids,
    task_context,
    task_trace_id,
    trace_headers,
    trace_id_of,
)
from crewbus.tracing.draft import SpanDraft, SpanPlace
from crewbus.tracing.observer import ChatSpanObserver
from crewbus.tracing.reader import TraceNode, build_tree, read_trace, walk
from crewbus.tracing.records import (
    ToolOutcomeLike,
    write_approval,
    write_memory_search,
    write_tool_call,
)
from crewbus.tracing.render import render_tree, to_json
from crewbus.tracing.settings import TraceSettings, load_trace_settings
from crewbus.tracing.setup import start_tracer
from crewbus.tracing.topology import ensure_trace_stream, trace_stream_config
from crewbus.tracing.tracer import ActiveSpan, Redacts, Tracer

__all__ = [
    "ActiveSpan",
    "ChatSpanObserver",
    "Redacts",
    "SpanDraft",
    "SpanPlace",
    "ToolOutcomeLike",
    "TraceNode",
    "TraceSettings",
    "Tracer",
    "build_tree",
    "context_from_headers",
    "ensure_trace_stream",
    "load_trace_settings",
    "read_trace",
    "render_tree",
    "round_context",
    "span_ids",
    "start_tracer",
    "task_context",
    "task_trace_id",
    "to_json",
    "trace_headers",
    "trace_id_of",
    "trace_stream_config",
    "walk",
    "write_approval",
    "write_memory_search",
    "write_tool_call",
]
