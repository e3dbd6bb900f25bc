"""JSON Schema export: what a client in any language needs to speak to crewbus.

The schemas say what crewbus accepts and may send. `submit_task` is closed
(`additionalProperties: false`) because the gateway refuses unknown fields. Every other
schema is open: crewbus ignores fields it doesn't know, and a client reading events, state
or replies must ignore them too, since a newer crewbus may add some (docs/contracts.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from crewbus_contracts.control import ControlAccepted, ControlCommand
from crewbus_contracts.errors import ErrorReply
from crewbus_contracts.events import TaskEvent
from crewbus_contracts.evolution import closed_schema
from crewbus_contracts.state import TaskState
from crewbus_contracts.tasks import SubmitTask, TaskAccepted
from crewbus_contracts.work import WorkRequest, WorkResult

EXPORTED: dict[str, Any] = {
    "submit_task": SubmitTask,
    "task_accepted": TaskAccepted,
    "error_reply": ErrorReply,
    "task_event": TaskEvent,
    "task_state": TaskState,
    "control_command": ControlCommand,
    "control_accepted": ControlAccepted,
    "work_request": WorkRequest,
    "work_result": WorkResult,
}


CLOSED = frozenset({"submit_task"})
"""Schemas of messages whose receiver refuses unknown fields (the submit gateway)."""


def schema_of(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(EXPORTED[name])
    if name in CLOSED:
        schema = closed_schema(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = name
    return schema


def export_schemas(out_dir: Path) -> list[Path]:
    """Write one `<name>.schema.json` per client-facing message (or union of messages)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXPORTED:
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
