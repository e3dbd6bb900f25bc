"""The base every bus message shares: a type tag and a schema version.

How the contracts evolve, so that old and new services share one bus during a rolling
upgrade (the full rules, with examples: docs/contracts.md):

- **Readers ignore fields they don't know**, at every nesting level. Neither `Message`
  nor `Model` forbids unknown fields, so a message from a newer service decodes in an
  older one. Only two edges refuse them, on purpose, with the field's path: the submit
  gateway and a model's structured reply (`crewbus_contracts.evolution`).
- **An added field has a default**, so a newer service still reads an older message that
  lacks it. Such an addition keeps `SCHEMA_VERSION`.
- **Anything else is breaking and bumps `SCHEMA_VERSION`**: removing or renaming a field,
  changing its type, unit or meaning, adding a required field, making an optional one
  required. A service refuses every other version (`unsupported_schema_version`).
- **A closed set grows readers first.** The `type` tag and `Literal` fields (statuses,
  error codes, roles) are closed: a reader refuses a value it doesn't know, so a new
  message type or value ships to every reader before any writer sends it. An unknown
  `type` is refused as `invalid_message` saying so, counted as `unknown_type`.
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

SCHEMA_VERSION = 1
"""Bumped only for a breaking change; an added field with a default keeps the version."""

AgentRole = Literal["planner", "researcher", "executor", "critic"]
StepRole = Literal["researcher", "executor"]
AGENT_ROLES: tuple[AgentRole, ...] = get_args(AgentRole)
"""The four agent roles, in the order they work on a task."""


class Message(msgspec.Struct, kw_only=True, tag_field="type"):
    """A message on the bus. `type` names it, `schema_version` says which contract it obeys.

    Every subclass spells its tag out, `class TaskCompleted(Message, tag="task_completed")`,
    so searching for a `type` seen on the wire finds its definition
    (`tests/test_wire_names.py` checks each one does, and that no two share a tag)."""

    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {self.schema_version}; "
                f"this service speaks {SCHEMA_VERSION}"
            )


def tag_of(cls: type[Message]) -> str:
    """The `type` tag a message class declares."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


class Model(msgspec.Struct, kw_only=True):
    """A value inside a message (or a model's structured reply): no tag, no version.
    Like `Message`, it ignores unknown fields when decoded."""
