"""The JSON Schema sent as `response_format`: self-contained, a plain object at the root.

msgspec puts every Struct in `$defs` and the root is a bare `$ref`; several providers
reject that (OpenAI strict mode, some llama.cpp grammars), so references are inlined.
A recursive Struct keeps its `$defs` for the recursive part only. Every object is closed
(`additionalProperties: false`): a reply with a field the contract lacks is sent back.
"""

from __future__ import annotations

from typing import Any

import msgspec

from crewbus_contracts.evolution import closed_schema

_REF_PREFIX = "#/$defs/"


def response_schema(output_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema of `output_type` with every non-recursive `$ref` inlined."""
    schema = closed_schema(msgspec.json.schema(output_type))
    defs: dict[str, Any] = schema.pop("$defs", {})
    used: set[str] = set()
    root = _inline(schema, defs, (), used)
    if used:
        root["$defs"] = {name: _inline(defs[name], defs, (name,), set()) for name in used}
    return root


def _inline(node: Any, defs: dict[str, Any], stack: tuple[str, ...], used: set[str]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs, stack, used) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        name = ref[len(_REF_PREFIX) :]
        if name in stack:
            used.add(name)
            return node
        target = _inline(defs[name], defs, (*stack, name), used)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **extra}
    return {key: _inline(value, defs, stack, used) for key, value in node.items()}
