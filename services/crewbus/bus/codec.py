"""Encoding and decoding bus messages, turning every decode failure into an ErrorReply."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from crewbus_contracts import SCHEMA_VERSION, ErrorCode, ErrorReply

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class _Envelope(msgspec.Struct):
    """Just enough of any message to check its version before trusting its shape."""

    schema_version: int = SCHEMA_VERSION


_envelope = msgspec.json.Decoder(_Envelope)


class BadMessageError(ValueError):
    """A message that cannot be accepted; `reply` says why, in the wire's own terms."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(f"{reply.code}: {reply.message}")
        self.reply = reply


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, decoder: msgspec.json.Decoder[T], max_bytes: int | None = None) -> T:
    """Decode `data`, or raise BadMessageError naming the problem (and its path)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise BadMessageError(
            ErrorReply(
                code="payload_too_large",
                message=f"payload is {len(data)} bytes; the limit is {max_bytes}",
            )
        )
    try:
        version = _envelope.decode(data).schema_version
    except msgspec.ValidationError:
        version = SCHEMA_VERSION  # not an object or bad version type: the full decode says why
    except msgspec.DecodeError as exc:
        raise BadMessageError(ErrorReply(code="malformed_json", message=str(exc))) from exc
    if version != SCHEMA_VERSION:
        raise BadMessageError(
            ErrorReply(
                code="unsupported_schema_version",
                message=f"schema_version {version} is not supported; this service speaks "
                f"{SCHEMA_VERSION}",
            )
        )
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        code: ErrorCode = "unknown_role" if _mentions_role(str(exc)) else "invalid_message"
        raise BadMessageError(ErrorReply(code=code, message=str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise BadMessageError(ErrorReply(code="malformed_json", message=str(exc))) from exc


def _mentions_role(error: str) -> bool:
    return "Invalid enum value" in error and ".role`" in error
