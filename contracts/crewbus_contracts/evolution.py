"""Schema evolution at the edges: finding the fields a contract does not know.

Readers on the bus ignore unknown fields (see `crewbus_contracts.base`). A few edges refuse
them instead, because there an ignored field is a silent loss: the submit gateway (a
misspelt `max_cost_usd` would run a task without its budget) and a model's structured
reply (a misspelt `depends_on` would run dependent steps in parallel). Those edges decode
as usual, then ask `unknown_fields` which keys the contract did not use.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import msgspec.inspect as mi

_ITEMS = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)


def unknown_fields(value: Any, tp: Any) -> list[str]:
    """The path of every key in `value` (decoded JSON) that no Struct of `tp` declares,
    e.g. `$.limits.max_roundz`. Meant for a value that `tp` already decoded."""
    return [
        f"{path}.{key}"
        for path, obj, struct in struct_objects(value, tp)
        for key in obj
        if key not in _known(struct)
    ]


def struct_objects(value: Any, tp: Any) -> Iterator[tuple[str, dict[str, Any], mi.StructType]]:
    """Every JSON object inside `value` that decodes to a Struct of `tp`, with its path."""
    yield from _walk(value, _info(tp), "$")


def closed_schema(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on every Struct's object (one with
    `properties`): the JSON Schema of an edge that refuses unknown fields."""
    if isinstance(schema, list):
        return [closed_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed_schema(item) for key, item in schema.items()}
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def _info(tp: Any) -> mi.Type:
    return mi.type_info(tp)


def _known(struct: mi.StructType) -> set[str]:
    names = {f.encode_name for f in struct.fields}
    if isinstance(struct.tag_field, str):
        names.add(struct.tag_field)
    return names


def _walk(
    value: Any, t: mi.Type, path: str
) -> Iterator[tuple[str, dict[str, Any], mi.StructType]]:
    while isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.StructType) and isinstance(value, dict):
        yield path, value, t
        for f in t.fields:
            if f.encode_name in value:
                yield from _walk(value[f.encode_name], f.type, f"{path}.{f.encode_name}")
    elif isinstance(t, mi.UnionType):
        member = next((m for m in t.types if _matches(value, m)), None)
        if member is not None:
            yield from _walk(value, member, path)
    elif isinstance(t, _ITEMS) and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, t.item_type, f"{path}[{i}]")
    elif isinstance(t, mi.TupleType) and isinstance(value, list):
        for i, (item, item_type) in enumerate(zip(value, t.item_types, strict=False)):
            yield from _walk(item, item_type, f"{path}[{i}]")
    elif isinstance(t, mi.DictType) and isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, t.value_type, f"{path}[{key!r}]")


def _matches(value: Any, t: mi.Type) -> bool:
    """Whether `value` is the union member `t` decoded: msgspec allows one object-like and
    one array-like member per union, or tagged Structs told apart by their tag."""
    while isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.StructType):
        return isinstance(value, dict) and (
            t.tag_field is None or value.get(t.tag_field) == t.tag
        )
    if isinstance(t, mi.DictType):
        return isinstance(value, dict)
    return isinstance(t, (*_ITEMS, mi.TupleType)) and isinstance(value, list)
