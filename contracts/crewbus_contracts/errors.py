"""Error replies: what a sender gets back when its message is refused."""

from __future__ import annotations

from typing import Literal

from crewbus_contracts.base import Message

ErrorCode = Literal[
    "malformed_json",
    "invalid_message",
    "unsupported_schema_version",
    "payload_too_large",
    "unknown_role",
    "not_found",
    "conflict",
    "internal_error",
    "memory_unavailable",
    "memory_starting",
    "invalid_vector",
    "embedder_mismatch",
    "embedding_failed",
]


class ErrorReply(Message, tag="error_reply"):
    """A refused message. `code` is stable; `message` explains it, with the path when known."""

    code: ErrorCode
    message: str
