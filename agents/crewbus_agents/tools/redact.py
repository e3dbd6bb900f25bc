"""Redaction of secrets in text and structured data, for traces and events.

Three sources of secrets: the values of environment variables whose names look secret
(`*KEY*`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, ...), well-known credential shapes
(`sk-...` API keys, `Bearer ...` headers, passwords in URLs), and patterns from settings.
Values under secret-looking keys of a mapping are redacted whole.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_LEN = 6
"""Shorter env values (`1`, `true`) would redact ordinary words, so they are left alone."""

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|PRIVATE", re.I)

SECRET_FIELD = re.compile(
    r"(^|[_-])((api|access|secret|private|signing)[_-]?key|token|secret|password|passwd"
    r"|credentials?|authorization|auth|cookie)($|[_-])",
    re.I,
)
"""Mapping keys whose string values are secrets (`api_key`, `access_token`, not `max_tokens`)."""

_BUILTIN_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\bsk-[A-Za-z0-9_-]{16,}", REDACTED),
    (r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}", rf"\1 {REDACTED}"),
    (
        r"(?i)\b(authorization\s*[:=]\s*(?:basic|token|digest)?\s*)[A-Za-z0-9._~+/=-]{8,}",
        rf"\1{REDACTED}",
    ),
    (r"(://[^/\s:@]+:)[^@\s/]+@", rf"\1{REDACTED}@"),
    (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", REDACTED),
    (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", REDACTED),
)
_BUILTIN_TRIGGER = re.compile(r"sk-|://|AKIA|ASIA|gh[pousr]_|xox")
_FOLDED_TRIGGERS = ("bearer", "authorization")
"""Literals the built-in patterns need (the `(?i)` ones' lower-cased): text with none of
them skips all seven. Every span and event passes through here, and a scan for literals
costs a small fraction of seven regex scans (docs/benchmarks.md). Keep them in step with
`_BUILTIN_PATTERNS`."""


def _may_hold_builtin(value: str) -> bool:
    if _BUILTIN_TRIGGER.search(value):
        return True
    lowered = value.lower()
    return any(literal in lowered for literal in _FOLDED_TRIGGERS)


class Redactor:
    """Replaces secrets with `[REDACTED]`; build it once (it snapshots the environment)."""

    def __init__(self, patterns: Iterable[str] = (), env: Mapping[str, str] | None = None) -> None:
        source = os.environ if env is None else env
        values = {
            v for k, v in source.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN
        }
        # Longest first, so a secret containing another one is replaced whole.
        self._values = sorted(values, key=len, reverse=True)
        self._builtin = [(re.compile(p), r) for p, r in _BUILTIN_PATTERNS]
        self._patterns = [(re.compile(p), REDACTED) for p in patterns]

    def text(self, value: str) -> str:
        """`value` with every known secret replaced."""
        for secret in self._values:
            value = value.replace(secret, REDACTED)
        if _may_hold_builtin(value):
            for pattern, replacement in self._builtin:
                value = pattern.sub(replacement, value)
        for pattern, replacement in self._patterns:
            value = pattern.sub(replacement, value)
        return value

    def data(self, value: Any) -> Any:
        """A copy of `value` (str, mapping, list, tuple; other values as they are), redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.data(v) for v in value)
        return value

    def _field(self, key: object, value: Any) -> Any:
        if isinstance(key, str) and isinstance(value, str) and value and SECRET_FIELD.search(key):
            return REDACTED
        return self.data(value)
