"""What a decision asks the orchestrator to publish: work to dispatch, events to emit."""

from __future__ import annotations

from dataclasses import dataclass

from crewbus_contracts import TaskEvent, WorkRequest


@dataclass(frozen=True)
class Dispatch:
    role: str
    request: WorkRequest
    msg_id: str
    """JetStream de-duplication id: a replayed decision dispatches the same work once."""


@dataclass(frozen=True)
class Emit:
    event: TaskEvent
    msg_id: str


Action = Dispatch | Emit
