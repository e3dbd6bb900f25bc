"""Encoding replies: msgspec JSON for bodies, the SSE wire format for streams."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Response
from fastapi.sse import format_sse_event

_encoder = msgspec.json.Encoder()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""No caching, and no buffering by nginx-style proxies: each event goes out at once."""


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(value), status_code=status, headers=headers,
                    media_type="application/json")


def sse(data: bytes | str, *, event: str | None = None, id: int | None = None) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data
    return format_sse_event(data_str=text, event=event, id=None if id is None else str(id))


def sse_comment(text: str) -> bytes:
    return format_sse_event(comment=text)
