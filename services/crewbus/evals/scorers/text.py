"""Reading answers: normalised text, and the number an answer gives.

`normalise` is what `exact` and `contains` compare: Unicode NFKC (full-width letters and
digits become ASCII, ligatures split, a no-break space becomes a space), then casefold
(`Straße` → `strasse`, unless case matters), then every run of whitespace becomes one
space, then leading and trailing space is dropped. Punctuation is kept: "4." is not "4".
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass


def normalise(text: str, *, casefold: bool = True) -> str:
    """NFKC, casefold (optional), whitespace collapsed to single spaces, trimmed."""
    text = unicodedata.normalize("NFKC", text)
    if casefold:
        text = text.casefold()
    return " ".join(text.split())


_NUMBER = re.compile(
    r"""(?<![\w.])                      # not inside a word or after a decimal point
    (?<![A-Za-z]-)                     # nor part of an id: chunk-99ab, gpt-4o, COVID-19
    (?P<sign>[-+])?
    (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?  # 1,234,567.89: commas separate thousands
        |\d+(?:\.\d+)?                    # 1234.5
        |\.\d+)                           # .5
    (?P<exp>[eE][-+]?\d+)?
    (?:\s*/\s*(?P<den>\d+(?:\.\d+)?)(?![\d,]))?   # 3/4
    (?P<pct>\s*%)?
    """,
    re.VERBOSE,
)
_MARKER = re.compile(r"(?:\banswer\b|\bresult\b|=|≈)", re.IGNORECASE)
"""Words after which "the answer" is given: its first number after the last one wins."""


@dataclass(frozen=True)
class Number:
    """A number found in text: its value as written and whether it was a percentage
    (`50%` reads as 50, and as 0.5 when compared)."""

    value: float
    percent: bool
    text: str

    def readings(self) -> tuple[float, ...]:
        return (self.value, self.value / 100) if self.percent else (self.value,)


def numbers(text: str) -> list[Number]:
    """Every number in `text`, in order: `1,234.5`, `-3`, `\u2212 3` (Unicode minus), `1e3`,
    `3/4` (0.75), `50%`. Full-width digits count (NFKC); a fraction over 0 is skipped.
    Digits right after a word and a hyphen are part of a name, not a number: a quoted
    memory id (`chunk-99ab…`) never gives an answer its number."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").replace("\u2044", "/")
    found: list[Number] = []
    for match in _NUMBER.finditer(text):
        value = float(match["num"].replace(",", "") + (match["exp"] or ""))
        if match["den"] is not None:
            denominator = float(match["den"])
            if denominator == 0:
                continue
            value /= denominator
        if match["sign"] == "-":
            value = -value
        if math.isfinite(value):
            found.append(Number(value, match["pct"] is not None, match.group(0).strip()))
    return found


def answer_number(text: str) -> Number | None:
    """The number an answer gives: the first one after the last `answer`, `result`, `=`
    or `≈` that has a number after it, else the last number in the text (the usual
    convention for "… so the answer is 42"). None when there is no number."""
    text = unicodedata.normalize("NFKC", text)
    for marker in reversed(list(_MARKER.finditer(text))):
        after = numbers(text[marker.end():])
        if after:
            return after[0]
    every = numbers(text)
    return every[-1] if every else None
