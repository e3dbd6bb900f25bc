"""W3C Trace Context (`traceparent`) carried in NATS headers, so one task is one trace.

Format: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`. A malformed header
is treated as absent (the spec's rule), so bad input never breaks a consumer.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace

TRACEPARENT = "traceparent"
_HEADER = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: int = _SAMPLED

    @property
    def sampled(self) -> bool:
        return bool(self.flags & _SAMPLED)

    def child(self) -> TraceContext:
        """Same trace, new span: what a service uses for the work it starts."""
        return replace(self, span_id=new_span_id())

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


def new_trace_id() -> str:
    return _nonzero_hex(16)


def new_span_id() -> str:
    return _nonzero_hex(8)


def _nonzero_hex(nbytes: int) -> str:
    while True:
        value = secrets.token_hex(nbytes)
        if int(value, 16):
            return value


def new_trace(sampled: bool = True) -> TraceContext:
    return TraceContext(new_trace_id(), new_span_id(), _SAMPLED if sampled else 0)


def parse(header: str | None) -> TraceContext | None:
    """The context in a `traceparent` value, or None if absent or invalid."""
    if not header:
        return None
    match = _HEADER.match(header.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16))


def from_headers(headers: Mapping[str, str] | None) -> TraceContext | None:
    return parse(headers.get(TRACEPARENT)) if headers else None


def continue_or_start(headers: Mapping[str, str] | None) -> TraceContext:
    """A child of the incoming context, or a new trace when there is none."""
    incoming = from_headers(headers)
    return incoming.child() if incoming else new_trace()


def inject(headers: dict[str, str] | None, context: TraceContext) -> dict[str, str]:
    """`headers` (or a new dict) with `traceparent` set; pass the result to `js.publish`."""
    out = dict(headers or {})
    out[TRACEPARENT] = context.header()
    return out
