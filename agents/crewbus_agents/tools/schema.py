"""JSON Schema for a tool's argument Struct, self-contained for the model (no `$ref`)."""

from __future__ import annotations

from typing import Any

import msgspec

from crewbus_agents.tools.errors import ToolDefinitionError


def parameters_schema(args_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The object schema of `args_type` with every `$ref` inlined.

    Some OpenAI-compatible servers reject `$ref`/`$defs`, so references are expanded;
    a recursive argument type cannot be expanded and is refused at registration.
    """
    raw = msgspec.json.schema(args_type)
    defs = raw.get("$defs", {})
    root = _inline(raw, defs, ())
    root.pop("$defs", None)
    if root.get("type") != "object":
        raise ToolDefinitionError(f"{args_type.__name__} must encode as a JSON object")
    return root


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            raise ToolDefinitionError(f"recursive argument type {name!r} is not supported")
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs, (*seen, name))
    return {k: _inline(v, defs, seen) for k, v in node.items() if k != "$defs"}
