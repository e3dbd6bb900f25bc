"""The base every bus message shares: a type tag and a schema version."""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1
"""Bumped only for an incompatible change; new optional fields keep the version."""

AgentRole = Literal["planner", "researcher", "executor", "critic"]
StepRole = Literal["researcher", "executor"]
AGENT_ROLES: tuple[AgentRole, ...] = ("planner", "researcher", "executor", "critic")


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Message(
    msgspec.Struct,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    tag=_snake,
):
    """A message on the bus. `type` names it, `schema_version` says which contract it obeys."""

    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {self.schema_version}; "
                f"this service speaks {SCHEMA_VERSION}"
            )


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A value inside a message (or a model's structured reply): no tag, no version."""
