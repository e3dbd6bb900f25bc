"""Keeping spans publishable: long strings are cut, oversized spans keep previews only.

A model's context can be hundreds of kilobytes; NATS refuses messages above its max
payload (1 MiB by default), and a trace that fails to publish tells nobody anything.
"""

from __future__ import annotations

from typing import Any

import msgspec

from crewbus_contracts.traces import Span

TRUNCATED = "…[truncated {n} chars]"


def clip(value: Any, max_chars: int) -> Any:
    """A copy of `value` with every string longer than `max_chars` cut (and marked)."""
    if isinstance(value, str):
        if len(value) <= max_chars:
            return value
        return value[:max_chars] + TRUNCATED.format(n=len(value) - max_chars)
    if isinstance(value, dict):
        return {k: clip(v, max_chars) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip(v, max_chars) for v in value]
    return value


def encode_fitting(span: Span, max_bytes: int) -> bytes:
    """The span's JSON, at most about `max_bytes`: input/output become previews if needed."""
    data = msgspec.json.encode(span)
    if len(data) <= max_bytes:
        return data
    budget = max(256, max_bytes // 4)
    span = msgspec.structs.replace(
        span,
        input=_preview(span.input, budget),
        output=_preview(span.output, budget),
        attributes={**span.attributes, "crewbus.trace.truncated": True},
    )
    return msgspec.json.encode(span)


def _preview(value: Any, budget: int) -> Any:
    if value is None:
        return None
    text = msgspec.json.encode(value).decode()
    if len(text) <= budget:
        return value
    return {"truncated": True, "chars": len(text), "preview": text[:budget]}
