"""Task submission and its answer: what a client sends and gets back."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from crewbus_contracts.base import AgentRole, Message, Model
from crewbus_contracts.prompts import PRODUCTION, VARIANT_NAME
from crewbus_contracts.replay import ReplayOptions

DEFAULT_MIN_SCORE = 0.7
"""The bar a critique's score must reach when a task names none."""
CRITIC_ANSWER_KEY = "answer"
"""The metadata key holding the answer a critic-only task (`target="critic"`) judges."""


class TaskLimits(Model):
    """Bounds on one task. Defaults suit an interactive run."""

    max_rounds: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    deadline_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 600.0
    min_score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = DEFAULT_MIN_SCORE
    max_cost_usd: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Budget in USD; crossing it ends the task as `budget_exceeded`."""
    max_tokens: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """Budget in tokens (input + output, all agents)."""
    approval_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    """A tool approval nobody gives within this is treated as a denial."""
    allow_degraded: bool = True
    """Repair an invalid plan, or answer in one executor step when planning fails.
    Off: an invalid plan fails the task with `plan_failed`."""


Degraded = Literal["plan_repaired", "single_step"]
"""How a round was run when its plan was not the model's valid plan: `plan_repaired` (the
plan's step graph was fixed), `single_step` (planning failed; one executor step answered)."""


class SubmitTask(Message, tag="submit_task"):
    """Command: run this task. The same `idempotency_key` always maps to the same task."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    limits: TaskLimits = msgspec.field(default_factory=TaskLimits)
    metadata: Annotated[dict[str, str], msgspec.Meta(max_length=32)] = {}
    variant: Annotated[str, msgspec.Meta(pattern=VARIANT_NAME)] = PRODUCTION
    """The variant the agents serve this task under (its prompts, models, parameters);
    the gateway refuses one that does not exist or whose prompts do not resolve."""
    target: AgentRole | None = None
    """Run one agent alone on the text instead of the crew (an evaluation of that agent):
    the planner plans it, a researcher or executor does it as one step, the critic judges
    `metadata["answer"]` against it. The task ends with that agent's output."""
    replay: ReplayOptions | None = None
    """Run as a replay (or shadow) of a recorded task: no tool with side effects runs, no
    approval is asked, recorded tool results and recalls are served (docs/replay.md)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.text.strip():
            raise ValueError("text must not be blank")
        if self.target == "critic" and not self.metadata.get(CRITIC_ANSWER_KEY, "").strip():
            raise ValueError(f"a critic target judges metadata[{CRITIC_ANSWER_KEY!r}]: "
                             "give the answer to judge there")


class TaskAccepted(Message, tag="task_accepted"):
    """Reply to a submission: the task id, and whether the key named an existing task."""

    task_id: str
    duplicate: bool = False


class TokenUsage(Model):
    """Tokens reported by the model provider for one or more calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    def plus(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            calls=self.calls + other.calls,
        )


class TaskResult(Model):
    """The final answer of a task and how it was judged."""

    answer: str
    score: float
    verdict: str
    accepted: bool
    rounds: int
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)
    simulated_model: bool = False
    """True when any agent answered with the simulated model: the answer is not real."""
    degraded: Degraded | None = None
    """Set when the answer's round did not run the model's plan as written (see `Degraded`)."""


class TaskError(Model):
    """Why a task failed: a stable `code` for programs, a `message` for people."""

    code: str
    message: str
