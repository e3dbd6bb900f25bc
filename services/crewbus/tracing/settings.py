"""TraceSettings: how long traces are kept, how big a span may get, what is redacted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import msgspec

from crewbus.settings import load

ENV_PREFIX = "CREWBUS_TRACE_"


class TraceSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Read from `CREWBUS_TRACE_<FIELD>`; `redact_patterns` is a JSON list of regexes."""

    env_fallbacks: ClassVar[dict[str, tuple[str, ...]]] = {
        "stream_replicas": ("CREWBUS_STREAM_REPLICAS",)}
    """The trace stream follows the bus's replicas unless told otherwise."""

    enabled: bool = True
    """Off: spans are not written (trace context still travels in headers)."""
    retention_s: Annotated[float, msgspec.Meta(gt=0)] = 7 * 24 * 3600.0
    """Spans older than this are dropped by the stream (JetStream max_age)."""
    max_payload_chars: Annotated[int, msgspec.Meta(ge=100)] = 20_000
    """A longer string in a span's input or output (a huge prompt, a tool's output) is cut."""
    max_span_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 512 * 1024
    """An encoded span larger than this keeps only previews of its input and output, so it
    stays under the NATS max payload (1 MiB by default)."""
    max_bytes: Annotated[int, msgspec.Meta(ge=-1)] = -1
    """Size limit of the whole trace stream (-1: only the age limit applies)."""
    batch_writes: bool = True
    """Spans written inside `Tracer.batch()` (one piece of agent work, a task's closing
    spans) go to the bus as one message per task. Off: one message per span, for a bus
    whose trace readers are older than span batches (they skip a batch)."""
    max_batch_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 1024 * 1024
    """A batch larger than this is split into several messages (the server's max payload
    bounds it too)."""
    confirm_writes: bool = False
    """Wait for JetStream's ack of every span message (one per batch). Off by default: a
    span is an observation, and the work it describes should not wait a round trip for it."""
    publish_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    """With `confirm_writes`: how long writing one span (or batch) may hold up the work."""
    max_read_spans: Annotated[int, msgspec.Meta(ge=1)] = 50_000
    """Upper bound on the spans `crewbus trace` reads for one task."""
    redact_patterns: list[str] = []
    """Extra regular expressions whose matches become `[REDACTED]` in spans."""
    stream_replicas: Annotated[int, msgspec.Meta(ge=1)] = 1
    """Replicas of the trace stream (more than 1 needs a NATS cluster); else
    `CREWBUS_STREAM_REPLICAS`."""


def load_trace_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> TraceSettings:
    """TraceSettings from `CREWBUS_TRACE_*`; `redact_patterns` is a JSON list."""
    return load(TraceSettings, prefix=ENV_PREFIX, env=env, **overrides)
