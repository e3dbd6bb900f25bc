"""Test helpers: other versions of the contracts, for rolling-upgrade tests.

A *newer* version of a contract is the current one plus optional fields, at any depth; an
*older* one lacks fields added since. Both are made from real messages by rewriting their
JSON, guided by the current contract's types, so they stay in step with the contracts.
`VersionedConnection` applies such a rewrite to every crewbus message a service publishes:
a service on it writes like a service of that version while its code reads like this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

import crewbus_contracts.traces  # noqa: F401  (registers Span as a Message)
from crewbus_agents.tools import ChatReply, ToolOutcome
from crewbus_contracts import Message, subjects
from crewbus_contracts.evolution import struct_objects

Rewrite = Callable[[Any, Any], list[str]]
"""Changes a decoded message in place, given its contract; returns the paths it touched."""

ADDED = {"since": "1.1", "hints": [{"deep": True}]}
"""What a newer version adds to every object: a field with nested values in it."""

ADDED_SINCE_FIRST_RELEASE: dict[str, list[tuple[str, ...]]] = {
    "submit_task": [("limits", "max_cost_usd"), ("limits", "max_tokens"),
                    ("limits", "approval_timeout_seconds"), ("variant",), ("replay",)],
    "plan_request": [("variant",), ("replay",)],
    "step_request": [("approvals",), ("variant",), ("replay",)],
    "critique_request": [("variant",), ("replay",)],
    "plan_result": [("report", "cost_usd")],
    "step_result": [("report", "cost_usd"), ("awaiting_approval",)],
    "critique_result": [("report", "cost_usd")],
    "task_state": [("spent_usd",), ("spent_tokens",), ("unpriced_calls",), ("approvals",),
                   ("trace_id",), ("limits", "max_cost_usd"), ("limits", "max_tokens"),
                   ("limits", "approval_timeout_seconds"), ("variant",), ("replay",)],
}
"""Fields the contracts gained after the first release of the bus (commit 70a16aa, per
`git log -- contracts/`): what a first-release service did not write."""


def add_fields(value: Any, tp: Any) -> list[str]:
    """A newer writer: an unknown field in every object that is a Struct of `tp`."""
    paths = []
    for path, obj, _ in list(struct_objects(value, tp)):
        obj["added_in_v1_1"] = ADDED
        paths.append(path)
    return paths


def drop_fields(value: Any, tp: Any) -> list[str]:
    """An older writer: the fields added since the first release are missing."""
    dropped = []
    for keys in ADDED_SINCE_FIRST_RELEASE.get(value.get("type", ""), []):
        obj = value
        for key in keys[:-1]:
            obj = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(obj, dict) and keys[-1] in obj:
            del obj[keys[-1]]
            dropped.append("$." + ".".join(keys))
    return dropped


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


CONTRACTS: dict[str, type[Message]] = {
    str(c.__struct_config__.tag): c for c in _subclasses(Message)
}
"""Every message type of the current contracts, by its `type` tag."""

TOOL_RECORDS: dict[str, type[msgspec.Struct]] = {"call": ToolOutcome, "turn": ChatReply}
"""The untagged records in `crewbus_tool_records`, by the kind part of their key."""


def contract_of(subject: str, value: Any) -> tuple[str, Any] | None:
    """The name and contract type of a published JSON value, if it is a crewbus one."""
    if not isinstance(value, dict):
        return None
    if subject.startswith(f"$KV.{subjects.TOOL_RECORDS_KV}."):
        kind = subject.split(".")[-2]
        record = TOOL_RECORDS.get(kind)
        return None if record is None else (record.__name__, record)
    tag = value.get("type")
    contract = CONTRACTS.get(tag) if isinstance(tag, str) else None
    return None if contract is None else (str(tag), contract)


class VersionedConnection(NATS):
    """A NATS connection that rewrites each crewbus message it publishes (streams, KV,
    events, replies, spans) with `rewrite`, and counts what it changed by message type."""

    def __init__(self, rewrite: Rewrite) -> None:
        super().__init__()
        self.rewrite = rewrite
        self.rewritten: Counter[str] = Counter()
        self.paths: set[str] = set()

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        await super().publish(subject, self._rewritten(subject, payload), reply, headers)

    def _rewritten(self, subject: str, payload: bytes) -> bytes:
        if not subject.startswith(("crewbus.", "_INBOX.", "$KV.crewbus_")) or not payload:
            return payload  # JetStream API calls, pull requests, KV deletes: not messages
        try:
            value = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return payload
        found = contract_of(subject, value)
        if found is None:
            return payload
        name, contract = found
        touched = self.rewrite(value, contract)
        if not touched:
            return payload
        self.rewritten[name] += 1
        self.paths.update(f"{name}:{path}" for path in touched)
        return msgspec.json.encode(value)
