"""Redaction of secrets in text and structured data, for traces and events.

Three sources of secrets: the values of environment variables whose names look secret
(`*KEY*`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, ...), well-known credential shapes
(`sk-...` API keys, `Bearer ...` headers, passwords in URLs), and patterns from settings.
Values under secret-looking keys of a mapping are redacted whole.

`Redactor.data` first encodes the value to JSON (in C) and looks at that text for anything
that could need redacting; only then does it walk the value in Python (see `may_redact`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

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
_BUILTIN_TRIGGERS = ("sk-", "://", "AKIA", "ASIA", "xox")
_GH_TRIGGERS = tuple(f"gh{c}_" for c in "pousr")
_FOLDED_TRIGGERS = ("bearer", "authorization")
"""Literals the built-in patterns need (the `(?i)` ones' lower-cased): text with none of
them skips all seven. Every span and event passes through here, and a scan for literals
costs a small fraction of seven regex scans (docs/benchmarks.md), and `in` a small
fraction of one regex alternating them. Keep them in step with `_BUILTIN_PATTERNS`; all
are ASCII letters and `-:/_`, which JSON never escapes."""

_JSON_BUILTIN_TRIGGERS = tuple(t.encode() for t in _BUILTIN_TRIGGERS)
_JSON_GH_TRIGGERS = tuple(t.encode() for t in _GH_TRIGGERS)
_JSON_FOLDED_TRIGGERS = tuple(t.encode() for t in _FOLDED_TRIGGERS)

_JSON_FIELD = re.compile(
    rb'[-_"]((api|access|secret|private|signing)[-_]?key|token|secret|password|passwd'
    rb'|credentials?|authorization|auth|cookie)[-_"\\]'
)
"""`SECRET_FIELD` over ASCII-lowered JSON: a key is `"key"` there, so its `^` is an opening
quote and its `$` a closing quote, or a backslash (a key's trailing newline, before which
`$` also matches, is `\\n`). Its words and `_`/`-` are never escaped: every key it matches
matches here, and a value such as `"token"` at worst costs a walk."""


def _led_by_word(word: str, before: tuple[str, ...], after: str = "") -> re.Pattern[bytes]:
    """`[-_"]` + one of `before` + `word` + `after` + `[-_"\\]`, written to start with the
    literal `word`, which the regex engine searches for fast (an alternation or a class
    first makes it try every position)."""
    behind = "|".join(f'(?<=[-_"]{re.escape(b)}{word})' for b in before)
    return re.compile(f'{word}(?:{behind}){after}[-_"\\\\]'.encode())


_KEY_PREFIXES = tuple(f"{w}{sep}" for w in ("api", "access", "secret", "private", "signing")
                      for sep in ("", "_", "-"))
_JSON_FIELDS = (
    _led_by_word("token", ("",)),
    _led_by_word("key", _KEY_PREFIXES),
    _led_by_word("secret", ("",)),
    _led_by_word("passw", ("",), "(?:ord|d)"),
    _led_by_word("credential", ("",), "s?"),
    _led_by_word("auth", ("",), "(?:orization)?"),
    _led_by_word("cookie", ("",)),
)
"""`_JSON_FIELD` as one regex per leading word: together they match where it does
(tests/test_redact_fastpath.py checks it)."""

_FOLDING_TO_ASCII = tuple(c.encode() for c in "\u0130\u0131\u017f\u212a")
"""The non-ASCII characters `re.I` matches to ASCII letters (dotted and dotless i,
long s, the Kelvin sign), which `bytes.lower` does not fold: JSON holding one is walked."""


def _may_hold_builtin(value: str) -> bool:
    if any(literal in value for literal in _BUILTIN_TRIGGERS):
        return True
    if "gh" in value and any(literal in value for literal in _GH_TRIGGERS):
        return True
    lowered = value.lower()
    return any(literal in lowered for literal in _FOLDED_TRIGGERS)


def _json_may_redact(data: bytes, needles: list[bytes]) -> bool:
    """Whether JSON `data` may hold an env secret or literal pattern (`needles`), a
    built-in credential shape or a secret key (see `Redactor.may_redact`). Loops, not
    `any()`: most values are a few hundred bytes, where a generator costs as much as a
    scan."""
    for needle in needles:
        if needle in data:
            return True
    for literal in _JSON_BUILTIN_TRIGGERS:
        if literal in data:
            return True
    if b"gh" in data:
        for literal in _JSON_GH_TRIGGERS:
            if literal in data:
                return True
    if not data.isascii():
        for c in _FOLDING_TO_ASCII:
            if c in data:
                return True
    # ASCII lowering is str.lower here: of the rest of Unicode only U+0130 and U+212A
    # lower to ASCII ('i' + U+0307, 'k'), and neither can spell a folded trigger.
    lowered = data.lower()
    for literal in _JSON_FOLDED_TRIGGERS:
        if literal in lowered:
            return True
    for field in _JSON_FIELDS:  # noqa: SIM110 (a loop: see the docstring)
        if field.search(lowered) is not None:
            return True
    return False


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
        literals = [_literal(p) for p in patterns]
        self._walk_always = any(lit is None for lit in literals)
        """A configured pattern that is not a plain literal: a regex over JSON text is not
        the regex over the strings (anchors, `\\s` against an escaped newline), so every
        value is walked."""
        self._needles = [n for v in (*self._values, *literals) if v and (n := _escaped(v))]
        """Each env secret and literal pattern as it appears inside a JSON string. One
        that cannot be encoded (a lone surrogate) is left out: no value holding it can be
        encoded either, and such a value is walked."""

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
        """`value` redacted (str, mapping, list, tuple; other values as they are): a copy
        if anything could need redacting, else `value` itself (see `may_redact`)."""
        if value is None:  # a span's missing input or output: the commonest value here
            return None
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, Mapping | list | tuple):
            return value  # the walk leaves it as it is: no need to encode it
        return self._walk(value) if self.may_redact(value) else value

    def may_redact(self, value: Any) -> bool:
        """False only if `data` would return a value equal to `value`: decided on its JSON
        (one encode in C) instead of a Python walk of every string and key.

        Every string the walk redacts is in the JSON, escaped character by character, and
        every str key as `"key"`; what the walk leaves alone (Structs, bytes, sets, non-str
        keys, ...) only adds text, so at worst a needless walk. A value msgspec cannot
        encode (a str subclass other than an enum, a custom Mapping, a lone surrogate) is
        walked. Assumed: dict and list subclasses iterate as dicts and lists do, and an
        enum's value is its text. A configured pattern other than a literal (`re.escape`)
        makes every value walked.
        """
        if self._walk_always:
            return True
        try:
            data = msgspec.json.encode(value)
        except Exception:
            return True
        return _json_may_redact(data, self._needles)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._walk(v) for v in value)
        return value

    def _field(self, key: object, value: Any) -> Any:
        if isinstance(key, str) and isinstance(value, str) and value and SECRET_FIELD.search(key):
            return REDACTED
        return self._walk(value)


def _literal(pattern: str) -> str | None:
    """The text a pattern made by `re.escape` matches (as bootstrap makes the MCP servers'
    secrets), else None; an empty one matches everywhere, so it is not a literal."""
    text = re.sub(r"\\(.)", r"\1", pattern, flags=re.S)
    return text if text and re.escape(text) == pattern else None


def _escaped(value: str) -> bytes | None:
    """`value` as it appears inside a JSON string msgspec writes; None if it cannot be."""
    try:
        return msgspec.json.encode(value)[1:-1]
    except UnicodeEncodeError:
        return None
