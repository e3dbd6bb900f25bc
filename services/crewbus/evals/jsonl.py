"""Dataset items as JSON Lines: parsed strictly (every bad line reported at once), written
canonically (the bytes a version is stored, exported and digested as).

One item a line, blank lines skipped:

    {"id": "add-1", "input": {"text": "What is 17 + 25?"}, "expected": "42"}

`input` may also be the text alone (`"input": "What is 17 + 25?"`): most items need no
limits or metadata, and other evaluation tools take a plain input, so the short form is
accepted on import; the canonical form always writes the object. Unknown fields are
refused (a typo such as `expcted` would otherwise score every item against nothing):
anything of your own goes in `metadata`.
"""

from __future__ import annotations

import codecs
import difflib
import functools
import hashlib
from typing import Any

import msgspec

from crewbus_contracts.evals import DatasetItem, ItemInput
from crewbus_contracts.tasks import TaskLimits

MAX_REPORTED = 20
"""Bad lines listed in one error; the rest are counted."""

_NESTED: dict[type[msgspec.Struct], dict[str, type[msgspec.Struct]]] = {
    DatasetItem: {"input": ItemInput},
    ItemInput: {"limits": TaskLimits},
    TaskLimits: {},
}
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_item_decoder = msgspec.json.Decoder(DatasetItem)


class DatasetInvalid(ValueError):
    """Items that cannot be imported, each with its line and reason; nothing was written.

    Its message has one line per problem: the one crewbus error that is more than one
    line, because a user fixing a file needs every line number, not the first."""

    def __init__(self, problems: list[tuple[int, str]], unit: str = "line") -> None:
        self.problems = problems
        self.unit = unit
        shown = [f"{unit} {number}: {reason}" for number, reason in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"and {len(problems) - MAX_REPORTED} more")
        plural = "s" if len(problems) != 1 else ""
        super().__init__("\n".join(
            [f"{len(problems)} invalid {unit}{plural}, nothing imported:", *shown]))


class NoItems(DatasetInvalid):
    """A file (or list) without a single item: a dataset version is never empty."""

    def __init__(self) -> None:
        ValueError.__init__(self, "no items: a dataset needs at least one")
        self.problems = []
        self.unit = "line"


def parse_jsonl(data: bytes, unit: str = "line") -> list[DatasetItem]:
    """Every item of a JSONL file, or DatasetInvalid naming every bad line (up to
    MAX_REPORTED) with its reason. Duplicate ids name the line of the first one."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    items: list[DatasetItem] = []
    problems: list[tuple[int, str]] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            item = parse_item(line)
        except ValueError as exc:
            problems.append((number, str(exc)))
            continue
        if (first := first_seen.get(item.id)) is not None:
            problems.append((number, f"duplicate id {item.id!r} (first on {unit} {first})"))
            continue
        first_seen[item.id] = number
        items.append(item)
    if problems:
        raise DatasetInvalid(problems, unit)
    if not items:
        raise NoItems()
    return items


def parse_item(line: bytes) -> DatasetItem:
    """One item from one line; a ValueError says what is wrong, with the field's path."""
    try:
        value = _any.decode(line)
    except msgspec.DecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {_json_type(value)}")
    if isinstance(value.get("input"), str):
        value["input"] = {"text": value["input"]}
    _refuse_unknown(value, DatasetItem, "$")
    try:
        return msgspec.convert(value, DatasetItem)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, str, Any], ...]:
    """(attribute, JSON name, default or NODEFAULT) of each field: asked once per class,
    since msgspec builds its field list anew on every call."""
    return tuple(
        (f.name, f.encode_name,
         f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default)
        for f in msgspec.structs.fields(cls))


def _refuse_unknown(value: dict[str, Any], cls: type[msgspec.Struct], path: str) -> None:
    known = [encode_name for _, encode_name, _ in _fields(cls)]
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known: {', '.join(known)}"
            if cls is DatasetItem:
                hint += "; put your own fields in `metadata`"
            raise ValueError(f"unknown field `{path}.{key}` ({hint})")
    for key, nested in _NESTED[cls].items():
        if isinstance(inner := value.get(key), dict):
            _refuse_unknown(inner, nested, f"{path}.{key}")


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def canonical_line(item: DatasetItem) -> bytes:
    """One item as one line: fields in the contract's order, defaults left out, the keys
    of every JSON value inside sorted; so equal items are equal bytes."""
    return _encoder.encode(_compact(item))


def canonical_jsonl(items: list[DatasetItem]) -> bytes:
    return b"".join(canonical_line(item) + b"\n" for item in items)


def digest(data: bytes) -> str:
    """What `DatasetVersion.digest` holds: the SHA-256 of the canonical JSONL, in hex."""
    return hashlib.sha256(data).hexdigest()


def decode_canonical(data: bytes) -> list[DatasetItem]:
    """Items from stored (already validated) canonical JSONL; unknown fields, written by
    a newer crewbus, are ignored here, as everywhere on the bus."""
    return [_item_decoder.decode(line) for line in data.splitlines() if line]


def _compact(value: Any) -> Any:
    if not isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value, order="deterministic")
    out: dict[str, Any] = {}
    for name, encode_name, default in _fields(type(value)):
        current = getattr(value, name)
        if default is not msgspec.NODEFAULT and current == default:
            continue
        out[encode_name] = _compact(current)
    return out
