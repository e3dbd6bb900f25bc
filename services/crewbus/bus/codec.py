"""Encoding and decoding bus messages, turning every decode failure into an ErrorReply.

Decoding ignores fields the contract doesn't know (a newer service may have written them),
unless the caller is an edge that refuses them (`refuse_unknown`). A message `type` this
service doesn't know is always refused, since nothing here can act on it.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from crewbus_contracts import SCHEMA_VERSION, ErrorCode, ErrorReply
from crewbus_contracts.evolution import unknown_fields

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class _Envelope(msgspec.Struct):
    """Just enough of any message to check its version before trusting its shape."""

    schema_version: int = SCHEMA_VERSION


_envelope = msgspec.json.Decoder(_Envelope)


_UNKNOWN_TAG = re.compile(r"^Invalid value (?P<value>.+) - at `(?P<path>\$[^`]*)\.type`$")
CONTRACTS_DOC = "docs/contracts.md"


class BadMessageError(ValueError):
    """A message that cannot be accepted; `reply` says why, in the wire's own terms.
    `reason` is the `crewbus_bad_input_total` label: the reply's code, or finer
    (`unknown_type`, `unknown_field`) where an operator needs to tell them apart."""

    def __init__(self, reply: ErrorReply, reason: str | None = None) -> None:
        super().__init__(f"{reply.code}: {reply.message}")
        self.reply = reply
        self.reason = reason or reply.code


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def decode(
    data: bytes, decoder: msgspec.json.Decoder[T], max_bytes: int | None = None,
    *, refuse_unknown: bool = False,
) -> T:
    """Decode `data`, or raise BadMessageError naming the problem (and its path).
    With `refuse_unknown`, a field the contract doesn't declare is refused too."""
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
        raise _malformed(exc) from exc
    if version != SCHEMA_VERSION:
        raise BadMessageError(
            ErrorReply(
                code="unsupported_schema_version",
                message=f"schema_version {version} is not supported; this service speaks "
                f"{SCHEMA_VERSION}, and a new version is a breaking change ({CONTRACTS_DOC})",
            )
        )
    try:
        value = decoder.decode(data)
    except msgspec.ValidationError as exc:
        unknown_tag = _UNKNOWN_TAG.match(str(exc))
        if unknown_tag:
            raise _unknown_type(unknown_tag, decoder.type) from exc
        code: ErrorCode = "unknown_role" if _mentions_role(str(exc)) else "invalid_message"
        raise BadMessageError(ErrorReply(code=code, message=str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise _malformed(exc) from exc
    if refuse_unknown:
        extra = unknown_fields(msgspec.json.decode(data), decoder.type)
        if extra:
            raise _unknown_fields(extra)
    return value


def _malformed(exc: msgspec.DecodeError) -> BadMessageError:
    return BadMessageError(ErrorReply(code="malformed_json", message=f"malformed JSON: {exc}"))


def _unknown_type(found: re.Match[str], tp: Any) -> BadMessageError:
    known = ", ".join(_tags(tp)) if found["path"] == "$" else ""
    message = (
        f"message type {found['value']} at `{found['path']}.type` is not one this service "
        f"accepts here" + (f" (it accepts {known})" if known else "") + ". If the type is "
        f"new, a newer service sent it before this one was upgraded: new types reach every "
        f"reader before any writer sends them ({CONTRACTS_DOC})"
    )
    return BadMessageError(ErrorReply(code="invalid_message", message=message), "unknown_type")


def _unknown_fields(paths: list[str]) -> BadMessageError:
    names = ", ".join(f"`{p}`" for p in paths)
    message = (
        f"unknown field{'s' if len(paths) > 1 else ''} {names}: this endpoint refuses fields "
        f"it does not know instead of ignoring them. Check the spelling; if the field is "
        f"new, this service is older than its client ({CONTRACTS_DOC})"
    )
    return BadMessageError(ErrorReply(code="invalid_message", message=message), "unknown_field")


def _tags(tp: Any) -> list[str]:
    info = mi.type_info(tp)
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    return [str(m.tag) for m in members if isinstance(m, mi.StructType) and m.tag is not None]


def _mentions_role(error: str) -> bool:
    return "Invalid enum value" in error and ".role`" in error
