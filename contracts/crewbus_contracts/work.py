"""Work for the agents (`crewbus.work.<role>`) and their results (`crewbus.results.<task_id>`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from crewbus_contracts.base import Message, Model
from crewbus_contracts.control import ApprovalDecision
from crewbus_contracts.models import (
    CRITIQUE_STEP_ID,
    PLAN_STEP_ID,
    Critique,
    Plan,
    PlanStep,
    StepOutput,
)
from crewbus_contracts.prompts import PRODUCTION
from crewbus_contracts.replay import ReplayOptions
from crewbus_contracts.tasks import DEFAULT_MIN_SCORE, TokenUsage


class PastRound(Model):
    """A finished round shown to the planner when it re-plans."""

    round: int
    plan: Plan
    answer: str
    critique: Critique


class PlanRequest(Message, tag="plan_request"):
    """Ask the planner for a plan (again, with the past rounds' critiques, when re-planning)."""

    task_id: str
    round: int
    task_text: str
    past_rounds: list[PastRound] = []
    allow_repair: bool = True
    """Fix an invalid plan's step graph instead of failing it (the task's `allow_degraded`)."""
    variant: str = PRODUCTION
    """The task's variant: which prompt, model and parameters the agent serves it with."""
    replay: ReplayOptions | None = None
    """The task's replay rules (`TaskState.replay`): enforced by the agent doing the work."""


class StepRequest(Message, tag="step_request"):
    """Ask a researcher or executor to do one step, given the outputs it depends on."""

    task_id: str
    round: int
    task_text: str
    step: PlanStep
    inputs: dict[str, str] = {}
    approvals: dict[str, ApprovalDecision] = {}
    """Human decisions on this step's paused tool calls, by call key (when resuming)."""
    variant: str = PRODUCTION
    """The task's variant: which prompt, model and parameters the agent serves it with."""
    replay: ReplayOptions | None = None
    """The task's replay rules (`TaskState.replay`): enforced by the agent doing the work."""


class CritiqueRequest(Message, tag="critique_request"):
    """Ask the critic to judge a round's answer against the task."""

    task_id: str
    round: int
    task_text: str
    plan: Plan
    answer: str
    min_score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = DEFAULT_MIN_SCORE
    """The task's bar (`limits.min_score`), shown to the critic."""
    variant: str = PRODUCTION
    """The task's variant: which prompt, model and parameters the agent serves it with."""
    replay: ReplayOptions | None = None
    """The task's replay rules (`TaskState.replay`): enforced by the agent doing the work."""


WorkRequest = PlanRequest | StepRequest | CritiqueRequest


class WorkReport(Model):
    """What every result says about how the work was done (for traces and metrics)."""

    role: str
    model: str
    prompt_version: str
    simulated_model: bool
    usage: TokenUsage
    duration_s: float
    worker: str
    attempt: int = 1
    cost_usd: float | None = 0.0
    """USD from the price table; None when the model has no price (never guessed)."""


ResultStatus = Literal["ok", "failed"]


class PlanResult(Message, tag="plan_result"):
    task_id: str
    round: int
    report: WorkReport
    plan: Plan | None = None
    error: str | None = None
    repairs: list[str] = []
    """What the planner fixed in the model's plan; empty when it was valid as written."""


class ApprovalRequest(Model):
    """A tool call the step paused on: it runs only once a human approves it."""

    call_key: str
    tool: str
    arguments: str


class StepResult(Message, tag="step_result"):
    task_id: str
    round: int
    step_id: str
    report: WorkReport
    output: StepOutput | None = None
    error: str | None = None
    awaiting_approval: ApprovalRequest | None = None


class CritiqueResult(Message, tag="critique_result"):
    task_id: str
    round: int
    report: WorkReport
    critique: Critique | None = None
    error: str | None = None


WorkResult = PlanResult | StepResult | CritiqueResult


def work_key(request: WorkRequest) -> str:
    """The step a request is about: 'plan', a plan step id, or 'critique'."""
    match request:
        case PlanRequest():
            return PLAN_STEP_ID
        case StepRequest():
            return request.step.id
        case CritiqueRequest():
            return CRITIQUE_STEP_ID


def result_for(
    request: WorkRequest, report: WorkReport,
    value: msgspec.Struct | None = None, error: str | None = None,
) -> WorkResult:
    """The result message answering `request`, carrying the value or the error."""
    match request:
        case PlanRequest():
            plan = value if isinstance(value, Plan) else None
            return PlanResult(task_id=request.task_id, round=request.round, report=report,
                              plan=plan, error=error)
        case StepRequest():
            output = value if isinstance(value, StepOutput) else None
            return StepResult(task_id=request.task_id, round=request.round,
                              step_id=request.step.id, report=report, output=output,
                              error=error)
        case CritiqueRequest():
            critique = value if isinstance(value, Critique) else None
            return CritiqueResult(task_id=request.task_id, round=request.round, report=report,
                                  critique=critique, error=error)
