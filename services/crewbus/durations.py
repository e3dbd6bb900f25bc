"""Durations as people write them on a command line: `90s`, `30m`, `24h`, `7d`."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, what: str = "--since") -> float:
    """Seconds; a ValueError naming `what` for anything else (one line at the CLI)."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{what} {text!r}: write a duration like 90s, 30m, 24h or 7d")
    return float(found["number"]) * _UNIT_S[found["unit"]]
