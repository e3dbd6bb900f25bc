"""Build a value that satisfies a JSON Schema: the simulated model's answer to any schema.

Covers what contracts use (objects, arrays, strings, numbers, enums, bools, `$ref`,
`anyOf`) and the cheap constraints (lengths, bounds, a few formats, simple patterns).
No ML in it: the same schema and seed always give the same value.
"""

from __future__ import annotations

import math
import re
from typing import Any

_MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "simulated@example.invalid",
    "uri": "https://example.invalid/simulated",
    "duration": "P1D",
}


def value_for(schema: dict[str, Any], seed: str = "simulated") -> Any:
    """A value valid against `schema` (which may carry its own `$defs`)."""
    return _value(schema, schema.get("$defs", {}), seed, 0)


def _value(node: Any, defs: dict[str, Any], seed: str, depth: int) -> Any:
    if not isinstance(node, dict) or not node:
        return f"[simulated] {seed}"
    ref = node.get("$ref")
    if isinstance(ref, str):
        return _value(defs.get(ref.rsplit("/", 1)[-1], {}), defs, seed, depth + 1)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = node[key]
            non_null = [o for o in options if o.get("type") != "null"]
            if depth >= _MAX_DEPTH and len(non_null) < len(options):
                return None
            return _value((non_null or options)[0], defs, seed, depth + 1)
    if "allOf" in node:
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            merged.update(part)
        return _value(merged, defs, seed, depth + 1)
    kind = node.get("type", "object" if "properties" in node else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return _object(node, defs, seed, depth)
    if kind == "array":
        return _array(node, defs, seed, depth)
    if kind in ("integer", "number"):
        return _number(node, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(node, seed)


def _object(node: dict[str, Any], defs: dict[str, Any], seed: str, depth: int) -> dict[str, Any]:
    properties: dict[str, Any] = node.get("properties", {})
    required = set(node.get("required", []))
    # Fields with a default are left out: the default is valid where a made-up value may
    # break an invariant the schema cannot express (e.g. depends_on naming real steps).
    names = [
        n
        for n, p in properties.items()
        if n in required or (depth < _MAX_DEPTH and isinstance(p, dict) and "default" not in p)
    ]
    out = {name: _value(properties[name], defs, name, depth + 1) for name in names}
    extra = node.get("additionalProperties")
    for i in range(node.get("minProperties", 0) - len(out)):
        out[f"key{i}"] = _value(extra if isinstance(extra, dict) else {}, defs, seed, depth + 1)
    return out


def _array(node: dict[str, Any], defs: dict[str, Any], seed: str, depth: int) -> list[Any]:
    low = node.get("minItems", 0)
    high = node.get("maxItems", max(low, 1))
    count = low if depth >= _MAX_DEPTH else max(low, min(1, high))
    prefix = node.get("prefixItems", [])
    items = node.get("items", {})
    out = []
    for i in range(max(count, len(prefix))):
        item_schema = prefix[i] if i < len(prefix) else items
        out.append(_value(item_schema, defs, f"{seed}-{i + 1}", depth + 1))
    return out


def _number(node: dict[str, Any], *, integer: bool) -> int | float:
    """The middle of the allowed range, or one step inside its only bound."""
    step = 1.0 if integer else 0.5
    low = node.get("minimum", -math.inf)
    high = node.get("maximum", math.inf)
    if "exclusiveMinimum" in node:
        low = max(low, node["exclusiveMinimum"] + (1 if integer else 1e-6))
    if "exclusiveMaximum" in node:
        high = min(high, node["exclusiveMaximum"] - (1 if integer else 1e-6))
    if math.isfinite(low) and math.isfinite(high):
        value = (low + high) / 2
    elif math.isfinite(low):
        value = low + step
    elif math.isfinite(high):
        value = high - step
    else:
        value = 1.0
    multiple = node.get("multipleOf")
    if multiple:
        value = math.ceil(value / multiple) * multiple
        if value > high:
            value -= multiple
    if not integer:
        return float(value)
    result = math.ceil(value)
    if math.isfinite(high):
        result = min(result, math.floor(high))
    return result


def _string(node: dict[str, Any], seed: str) -> str:
    fmt = node.get("format")
    text = f"[simulated] {seed}"
    if isinstance(fmt, str):
        text = _FORMATS.get(fmt, text)
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        text = _matching(pattern, seed, text)
    low, high = node.get("minLength", 0), node.get("maxLength")
    if len(text) < low:
        text = text + "x" * (low - len(text))
    if high is not None and len(text) > high:
        text = text[:high]
    return text


def _matching(pattern: str, seed: str, default: str) -> str:
    """Try a few plausible strings against `pattern`; good enough for id-like patterns."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", seed).strip("-").lower() or "sim"
    for candidate in (default, slug, slug.replace("-", "_"), "sim1", "simulated", "a", "1", "A"):
        if re.fullmatch(pattern, candidate):
            return candidate
    return default
