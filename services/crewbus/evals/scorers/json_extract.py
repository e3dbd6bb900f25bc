"""Finding the JSON in an answer, and comparing it with an expected value."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_NOTHING = object()


def find_json(answer: str) -> Any:
    """The answer's JSON value: the whole answer, else the first fenced ```json block
    that parses, else the first top-level object or array that parses. Raises ValueError
    when there is none."""
    text = answer.strip()
    for candidate in (text, *(m.group(1).strip() for m in _FENCE.finditer(answer))):
        value = _parse(candidate)
        if value is not _NOTHING:
            return value
    decoder = json.JSONDecoder()
    for start, char in enumerate(answer):
        if char in "{[":
            try:
                return decoder.raw_decode(answer, start)[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("the answer holds no JSON value (whole, in a ```json block, or inline)")


def _parse(text: str) -> Any:
    if not text:
        return _NOTHING
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return _NOTHING


def subset_mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where `actual` fails to contain `expected`, or None when it does.

    Objects: every expected key is present with a matching value (extra keys are fine).
    Arrays: the same length, element by element. Scalars: equal, numbers by value
    (`1 == 1.0`) but never a boolean for a number.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {_shown(actual)}"
        for key, want in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            found = subset_mismatch(want, actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected an array, got {_shown(actual)}"
        if len(actual) != len(expected):
            return f"{path}: expected {len(expected)} elements, got {len(actual)}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found = subset_mismatch(want, got, f"{path}[{index}]")
            if found:
                return found
        return None
    if _same_scalar(expected, actual):
        return None
    return f"{path}: expected {_shown(expected)}, got {_shown(actual)}"


def _same_scalar(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)
    return type(expected) is type(actual) and bool(expected == actual)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
