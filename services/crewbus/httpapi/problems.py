"""Errors as RFC 9457 problem details (`application/problem+json`), with the bus's codes.

A refusal the bus gives (an `ErrorReply`) keeps its code (`invalid_message`,
`payload_too_large`, ...) and gets the HTTP status that fits; the gateway's own refusals
(`unauthorized`, `forbidden`, `rate_limited`, ...) use the same shape. The `type` is a URN
naming the code, so a client can switch on either.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from crewbus_contracts import ErrorReply

MEDIA_TYPE = "application/problem+json"

STATUS_OF_CODE: dict[str, int] = {
    "malformed_json": 400,
    "invalid_request": 400,
    "unsupported_model": 400,
    "unsupported_field": 400,
    "invalid_message": 422,
    "unknown_role": 422,
    "unsupported_schema_version": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "internal_error": 500,
    "task_failed": 502,
    "unavailable": 503,
    "timeout": 504,
}
"""The HTTP status of each code; a code not listed here is a 500."""

_PATH = re.compile(r"`(\$[^`]*)`")


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, plus `code` (the bus's error code) and `path` (the JSON
    path of the bad field, when there is one)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    path: str | None = None
    retry_after_s: int | None = None
    error: dict[str, Any] | None = None
    """OpenAI's error object, on the OpenAI-compatible routes only (its clients read it)."""


class ProblemError(Exception):
    """Raised by a route: answered as problem+json with `code`'s status."""

    def __init__(self, code: str, detail: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None, retry_after_s: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status or STATUS_OF_CODE.get(code, 500)
        self.headers = headers or {}
        self.retry_after_s = retry_after_s
        self.path = path

    @classmethod
    def from_reply(cls, reply: ErrorReply) -> ProblemError:
        """The bus's refusal, with the path it names (`$.limits.max_rounds`)."""
        return cls(reply.code, reply.message, path=path_in(reply.message))

    def problem(self, instance: str | None = None, openai: bool = False) -> Problem:
        title = self.code.replace("_", " ")
        error = None
        if openai:
            error = {"message": self.detail, "type": _openai_type(self.status),
                     "param": self.path, "code": self.code}
        return Problem(type=f"urn:crewbus:problem:{self.code}", title=title,
                       status=self.status, detail=self.detail, code=self.code,
                       instance=instance, path=self.path, retry_after_s=self.retry_after_s,
                       error=error)


def path_in(message: str) -> str | None:
    """The JSON path an error message names (msgspec's ``- at `$.limits.max_rounds` ``)."""
    found = _PATH.search(message)
    return found.group(1) if found else None


def _openai_type(status: int) -> str:
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"
