"""Task events on `crewbus.events.<task_id>.<kind>`: what `--stream` and `watch` print."""

from __future__ import annotations

from crewbus_contracts.base import Message
from crewbus_contracts.models import Critique, PlanStep
from crewbus_contracts.tasks import Degraded, TaskError, TaskResult


class TaskSubmitted(Message):
    task_id: str
    text: str
    at: float


class TaskPlanned(Message):
    task_id: str
    round: int
    steps: list[PlanStep]
    at: float
    degraded: Degraded | None = None
    repairs: list[str] = []


class StepStarted(Message):
    task_id: str
    round: int
    step_id: str
    role: str
    worker: str
    attempt: int
    at: float


class StepFinished(Message):
    task_id: str
    round: int
    step_id: str
    role: str
    ok: bool
    duration_s: float
    at: float
    error: str | None = None


class TaskCritiqued(Message):
    task_id: str
    round: int
    critique: Critique
    at: float


class TaskReplanned(Message):
    task_id: str
    round: int
    reason: str
    at: float


class ApprovalRequested(Message):
    task_id: str
    round: int
    step_id: str
    call_key: str
    tool: str
    arguments: str
    expires_at: float
    at: float


class ApprovalResolved(Message):
    task_id: str
    call_key: str
    tool: str
    approved: bool
    by: str
    reason: str
    at: float


class TaskCancelled(Message):
    task_id: str
    by: str
    reason: str
    at: float


class TaskCompleted(Message):
    task_id: str
    result: TaskResult
    at: float


class TaskFailed(Message):
    task_id: str
    error: TaskError
    at: float


TaskEvent = (
    TaskSubmitted
    | TaskPlanned
    | StepStarted
    | StepFinished
    | TaskCritiqued
    | TaskReplanned
    | ApprovalRequested
    | ApprovalResolved
    | TaskCancelled
    | TaskCompleted
    | TaskFailed
)

TERMINAL_EVENTS = (TaskCompleted, TaskFailed, TaskCancelled)


def event_kind(event: TaskEvent) -> str:
    """The last token of the event's subject, equal to its `type` tag."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag
