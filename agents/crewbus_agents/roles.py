"""The four agents: what each asks its model, and how its answer becomes a result.

Each agent is a small declarative object; the shared runtime (runtime.py) does the bus
work. Adding an agent means adding one of these and a prompt file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from crewbus.llm.adapter import Repair
from crewbus_agents.plan_repair import repair_plan_reply
from crewbus_agents.prompts import Prompt, load_prompt
from crewbus_contracts import (
    AgentRole,
    Critique,
    CritiqueRequest,
    Plan,
    PlanRequest,
    StepOutput,
    StepRequest,
    WorkRequest,
)


class WrongRoleError(ValueError):
    """A request reached an agent that does not do that kind of work."""


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


@dataclass(frozen=True)
class Agent:
    role: AgentRole
    output_type: type[msgspec.Struct]
    uses_tools: bool = False
    """Works through the tool-calling loop (model -> tool -> model) instead of one reply."""
    repair: Repair[msgspec.Struct] | None = None
    """Fixes an invalid reply before the model is asked again (when the request allows)."""
    prompt: Prompt = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", load_prompt(self.role))

    def user_message(self, request: WorkRequest) -> str:
        match request:
            case PlanRequest() if self.role == "planner":
                return _plan_message(request)
            case StepRequest() if self.role == request.step.role:
                return _step_message(request)
            case CritiqueRequest() if self.role == "critic":
                return _critique_message(request)
        raise WrongRoleError(f"the {self.role} cannot handle a {type(request).__name__}")


def _plan_message(request: PlanRequest) -> str:
    parts = [f"Task:\n{request.task_text}"]
    for past in request.past_rounds:
        parts.append(
            f"Past round {past.round} plan:\n{_json(past.plan)}\n"
            f"Its answer:\n{past.answer}\n"
            f"Critique (score {past.critique.score:.2f}, {past.critique.verdict}):\n"
            f"reasons: {_json(past.critique.reasons)}\n"
            f"suggestions: {_json(past.critique.suggestions)}"
        )
    return "\n\n".join(parts)


def _step_message(request: StepRequest) -> str:
    parts = [f"Overall task:\n{request.task_text}", f"Your step ({request.step.id}):\n"
             f"{request.step.instruction}"]
    for step_id, output in request.inputs.items():
        parts.append(f"Output of step {step_id}:\n{output}")
    return "\n\n".join(parts)


def _critique_message(request: CritiqueRequest) -> str:
    return (
        f"Task:\n{request.task_text}\n\n"
        f"Plan that was followed:\n{_json(request.plan)}\n\n"
        f"Answer to judge:\n{request.answer}"
    )


AGENTS: dict[str, Agent] = {
    "planner": Agent("planner", Plan, repair=repair_plan_reply),
    "researcher": Agent("researcher", StepOutput),
    "executor": Agent("executor", StepOutput, uses_tools=True),
    "critic": Agent("critic", Critique),
}
