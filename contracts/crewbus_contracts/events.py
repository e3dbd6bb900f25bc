"""Task events on `crewbus.events.<task_id>.<kind>`: what `--stream` and `watch` print."""

from __future__ import annotations

from typing import get_args

from crewbus_contracts.base import Message, tag_of
from crewbus_contracts.models import Critique, PlanStep
from crewbus_contracts.tasks import Degraded, TaskError, TaskResult


class TaskSubmitted(Message, tag="task_submitted"):
    task_id: str
    text: str
    at: float


class TaskPlanned(Message, tag="task_planned"):
    task_id: str
    round: int
    steps: list[PlanStep]
    at: float
    degraded: Degraded | None = None
    repairs: list[str] = []


class StepStarted(Message, tag="step_started"):
    task_id: str
    round: int
    step_id: str
    role: str
    worker: str
    attempt: int
    at: float


class StepFinished(Message, tag="step_finished"):
    task_id: str
    round: int
    step_id: str
    role: str
    ok: bool
    duration_s: float
    at: float
    error: str | None = None


class TaskCritiqued(Message, tag="task_critiqued"):
    task_id: str
    round: int
    critique: Critique
    at: float


class TaskReplanned(Message, tag="task_replanned"):
    task_id: str
    round: int
    reason: str
    at: float


class ApprovalRequested(Message, tag="approval_requested"):
    task_id: str
    round: int
    step_id: str
    call_key: str
    tool: str
    arguments: str
    expires_at: float
    at: float


class ApprovalResolved(Message, tag="approval_resolved"):
    task_id: str
    call_key: str
    tool: str
    approved: bool
    by: str
    reason: str
    at: float


class TaskCancelled(Message, tag="task_cancelled"):
    task_id: str
    by: str
    reason: str
    at: float


class TaskCompleted(Message, tag="task_completed"):
    task_id: str
    result: TaskResult
    at: float


class TaskFailed(Message, tag="task_failed"):
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

TerminalEvent = TaskCompleted | TaskFailed | TaskCancelled
"""The events that end a task; nothing about the task is published after one."""
TERMINAL_EVENTS: tuple[type[TerminalEvent], ...] = get_args(TerminalEvent)
TERMINAL_KINDS: tuple[str, ...] = tuple(tag_of(t) for t in TERMINAL_EVENTS)
"""Their `type` tags, the `kind` of their subjects."""


def event_kind(event: TaskEvent) -> str:
    """The last token of the event's subject, equal to its `type` tag."""
    return tag_of(type(event))
