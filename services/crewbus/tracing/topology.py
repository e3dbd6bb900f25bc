"""The trace stream: limits retention (by age, optionally by size), so traces expire."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from crewbus.bus.topology import DUPLICATE_WINDOW_S
from crewbus.tracing.settings import TraceSettings
from crewbus_contracts.subjects import TRACES, TRACES_STREAM, wildcard


def trace_stream_config(settings: TraceSettings) -> StreamConfig:
    return StreamConfig(
        name=TRACES_STREAM,
        description="crewbus trace spans, one subject per task",
        subjects=[wildcard(TRACES)],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        max_age=settings.retention_s,
        max_bytes=settings.max_bytes,
        num_replicas=settings.stream_replicas,
        duplicate_window=min(DUPLICATE_WINDOW_S, settings.retention_s),
    )


async def ensure_trace_stream(js: JetStreamContext, settings: TraceSettings) -> None:
    """Create the stream, or bring its limits in line with settings; safe from any replica."""
    config = trace_stream_config(settings)
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
