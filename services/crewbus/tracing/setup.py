"""One call for a service to get its tracer: settings, redactor and stream in place."""

from __future__ import annotations

from collections.abc import Iterable

from nats.js import JetStreamContext

from crewbus.tracing.settings import TraceSettings, load_trace_settings
from crewbus.tracing.topology import ensure_trace_stream
from crewbus.tracing.tracer import Tracer


async def start_tracer(
    js: JetStreamContext,
    service: str,
    settings: TraceSettings | None = None,
    extra_patterns: Iterable[str] = (),
    ensure_stream: bool = True,
) -> Tracer:
    """A Tracer for `service` that redacts secrets, the env's secret values and the
    configured patterns (plus `extra_patterns`, e.g. the tool settings' own). The stream is
    made here unless `ensure_stream` is false (an identity that may not administer streams;
    `crewbus up` made it)."""
    # Imported here: the redactor lives with the tools, and only a running service needs it.
    from crewbus_agents.tools.redact import Redactor

    settings = settings or load_trace_settings()
    if ensure_stream:
        await ensure_trace_stream(js, settings)
    redactor = Redactor([*settings.redact_patterns, *extra_patterns])
    return Tracer(js, service, redactor, settings)
