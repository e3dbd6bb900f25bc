"""What the agents' models produce: plans, step outputs and critiques (structured outputs)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from crewbus_contracts.base import Model, StepRole

MAX_PLAN_STEPS = 12
PLAN_STEP_ID = "plan"
CRITIQUE_STEP_ID = "critique"
RESERVED_STEP_IDS = (PLAN_STEP_ID, CRITIQUE_STEP_ID)
"""The planner's and the critic's work in a round: a plan step may not take these ids."""

StepId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
MAX_INSTRUCTION_CHARS = 4000


class PlanStep(Model):
    """One unit of work: who does it, what to do, which steps must finish first."""

    id: StepId
    role: StepRole
    instruction: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_INSTRUCTION_CHARS)]
    depends_on: list[StepId] = []


class Plan(Model):
    """The planner's answer. Steps without a path between them run in parallel."""

    steps: Annotated[list[PlanStep], msgspec.Meta(min_length=1, max_length=MAX_PLAN_STEPS)]
    rationale: str = ""

    def __post_init__(self) -> None:
        ids = [s.id for s in self.steps]
        if reserved := [i for i in ids if i in RESERVED_STEP_IDS]:
            raise ValueError(f"step ids {reserved} are reserved for the planner and the critic")
        if len(set(ids)) != len(ids):
            raise ValueError("step ids must be unique")
        known = set(ids)
        for step in self.steps:
            missing = [d for d in step.depends_on if d not in known]
            if missing:
                raise ValueError(f"step {step.id!r} depends on unknown steps {missing}")
            if step.id in step.depends_on:
                raise ValueError(f"step {step.id!r} depends on itself")
        _check_acyclic(self.steps)

    def sinks(self) -> list[PlanStep]:
        """Steps nothing depends on: their outputs form the answer."""
        needed = {d for s in self.steps for d in s.depends_on}
        return [s for s in self.steps if s.id not in needed]


def _check_acyclic(steps: list[PlanStep]) -> None:
    deps = {s.id: set(s.depends_on) for s in steps}
    done: set[str] = set()
    while deps:
        ready = [k for k, v in deps.items() if v <= done]
        if not ready:
            raise ValueError(f"plan has a dependency cycle among {sorted(deps)}")
        for k in ready:
            done.add(k)
            del deps[k]


class StepOutput(Model):
    """A researcher's or executor's answer to one step."""

    content: Annotated[str, msgspec.Meta(min_length=1)]
    sources: list[str] = []


Verdict = Literal["accept", "revise", "reject"]


class Critique(Model):
    """The critic's judgement of an answer against the task."""

    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    verdict: Verdict
    reasons: list[str] = []
    suggestions: list[str] = []
