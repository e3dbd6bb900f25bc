"""Task state as kept in the `crewbus_tasks` KV bucket: the single truth about a task."""

from __future__ import annotations

from typing import Literal

import msgspec

from crewbus_contracts.base import Message, Model
from crewbus_contracts.models import Critique, Plan
from crewbus_contracts.tasks import TaskError, TaskLimits, TaskResult, TokenUsage

TaskStatus = Literal["queued", "planning", "running", "critiquing", "completed", "failed"]
StepStatus = Literal["pending", "dispatched", "running", "done", "failed"]
FINAL_STATUSES: tuple[TaskStatus, ...] = ("completed", "failed")


class StepState(Model):
    status: StepStatus = "pending"
    role: str = ""
    dispatched_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    output: str | None = None
    sources: list[str] = []
    error: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    worker: str | None = None
    attempt: int = 0
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)
    cost_usd: float | None = 0.0
    simulated_model: bool = False


class RoundState(Model):
    number: int
    planner: StepState = msgspec.field(default_factory=lambda: StepState(role="planner"))
    plan: Plan | None = None
    steps: dict[str, StepState] = {}
    answer: str | None = None
    critic: StepState = msgspec.field(default_factory=lambda: StepState(role="critic"))
    critique: Critique | None = None


class TaskState(Message):
    task_id: str
    text: str
    status: TaskStatus
    limits: TaskLimits
    created_at: float
    updated_at: float
    deadline_at: float
    metadata: dict[str, str] = {}
    rounds: list[RoundState] = []
    result: TaskResult | None = None
    error: TaskError | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def current_round(self) -> RoundState:
        return self.rounds[-1]
