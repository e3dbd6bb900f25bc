"""What every agent role is: the hooks the runtime calls, with the defaults most roles keep.

The runtime takes work off the bus, then for the role it runs:

    request = role.accept(work)                  # refuse another role's work
    message = role.user_message(request)
    recalled = await role.recall(request, memory, trace)
    ... ask the model: role.prompt, role.output_type, role.repair(request),
        role.hint(request, recalled) (for the simulated model only) ...
    await role.after_work(request, outcome, recalled, memory)

and never asks which role it runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar, cast

import msgspec

from crewbus.llm.adapter import Repair
from crewbus.llm.hint import ModelHint
from crewbus_agents.outcome import WorkOutcome
from crewbus_agents.prompts import Prompt, load_prompt
from crewbus_agents.recall import NOTHING, Recall, Recalled
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import AgentRole, CritiqueRequest, PlanRequest, StepRequest, WorkRequest

R = TypeVar("R", PlanRequest, StepRequest, CritiqueRequest)


class WrongRoleError(ValueError):
    """A request reached an agent that does not do that kind of work."""


def json_text(value: Any) -> str:
    """`value` as JSON text, for showing a contract to the model."""
    return msgspec.json.encode(value).decode()


class Role(ABC, Generic[R]):
    """One agent role. A subclass names its role, prompt file and output type, and builds
    its user message; the other hooks do nothing unless overridden."""

    name: ClassVar[AgentRole]
    request_type: ClassVar[type[WorkRequest]]
    """The kind of work this role takes off the bus; any other is refused."""
    prompt_file: ClassVar[str]
    """The system prompt, a file of `crewbus_agents/prompts/` with a `version:` header."""
    output_type: ClassVar[type[msgspec.Struct]]
    uses_tools: ClassVar[bool] = False
    """Works through the tool-calling loop (model -> tool -> model) instead of one reply."""

    def __init__(self) -> None:
        self.prompt: Prompt = load_prompt(self.prompt_file)

    def accept(self, request: WorkRequest) -> R:
        """`request`, when it is this role's work; else raise `WrongRoleError`."""
        if isinstance(request, self.request_type) and self.takes(request):
            return cast(R, request)
        raise WrongRoleError(f"the {self.name} cannot handle a {type(request).__name__}")

    def takes(self, request: Any) -> bool:
        """Whether work of `request_type` is this role's (all of it, unless overridden)."""
        return True

    @abstractmethod
    def user_message(self, request: R) -> str:
        """What the model is asked, before any recalled memories are added."""

    async def recall(self, request: R, memory: Recall, trace: TraceScope | None) -> Recalled:
        """Memories to show the model, appended to the user message."""
        return NOTHING

    def hint(self, request: R, recalled: Recalled) -> ModelHint:
        """What the simulated model is told about the work (see `crewbus.llm.hint`)."""
        return ModelHint(task=request.task_text)

    def repair(self, request: R) -> Repair[Any] | None:
        """Fixes an invalid reply before the model is asked again (None: never)."""
        return None

    async def after_work(
        self, request: R, outcome: WorkOutcome, recalled: Recalled, memory: Recall
    ) -> None:
        """Runs once the model answered, before the result is published; may amend it."""
