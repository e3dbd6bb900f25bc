"""Task state as kept in the `crewbus_tasks` KV bucket: the single truth about a task."""

from __future__ import annotations

from typing import Literal

import msgspec

from crewbus_contracts.base import AgentRole, Message, Model
from crewbus_contracts.control import ApprovalDecision
from crewbus_contracts.models import Critique, Plan
from crewbus_contracts.outbox import OutboxEntry
from crewbus_contracts.prompts import PRODUCTION
from crewbus_contracts.replay import ReplayOptions
from crewbus_contracts.tasks import Degraded, TaskError, TaskLimits, TaskResult, TokenUsage

TaskStatus = Literal[
    "queued", "planning", "running", "critiquing", "awaiting_approval",
    "completed", "failed", "cancelled",
]
StepStatus = Literal["pending", "dispatched", "running", "awaiting_approval", "done", "failed"]
FINAL_STATUSES: tuple[TaskStatus, ...] = ("completed", "failed", "cancelled")


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
    degraded: Degraded | None = None
    """Planner only: how the round ran without the model's valid plan."""
    repairs: list[str] = []
    """Planner only: what was fixed in the model's plan, one line per fix."""


class ApprovalState(Model):
    """A tool call waiting for (or given) a human's decision."""

    round: int
    step_id: str
    tool: str
    arguments: str
    requested_at: float
    expires_at: float
    decision: ApprovalDecision | None = None


class RoundState(Model):
    number: int
    planner: StepState = msgspec.field(default_factory=lambda: StepState(role="planner"))
    plan: Plan | None = None
    steps: dict[str, StepState] = {}
    answer: str | None = None
    critic: StepState = msgspec.field(default_factory=lambda: StepState(role="critic"))
    critique: Critique | None = None


class TaskState(Message, tag="task_state"):
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
    spent_usd: float = 0.0
    spent_tokens: int = 0
    unpriced_calls: int = 0
    """Calls whose model has no price: their cost is unknown, not counted as zero."""
    approvals: dict[str, ApprovalState] = {}
    """By tool-call key."""
    trace_id: str = ""
    target: AgentRole | None = None
    """Set for a single-agent task (`SubmitTask.target`): only that agent works on it."""
    outbox: list[OutboxEntry] = []
    """What the last saved decision publishes; empty once it is published (see outbox.py)."""
    variant: str = PRODUCTION
    """The variant named at submission; every work request of the task carries it."""
    replay: ReplayOptions | None = None
    """Set for a replayed or shadow task; every work request of the task carries it."""

    @property
    def pending_approvals(self) -> dict[str, ApprovalState]:
        return {k: a for k, a in self.approvals.items() if a.decision is None}

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def current_round(self) -> RoundState:
        return self.rounds[-1]
