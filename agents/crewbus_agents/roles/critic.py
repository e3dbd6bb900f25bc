"""The critic: scores a round's answer against the task and the task's bar, with reasons
and suggestions the planner sees when it re-plans.

Its prompt is `prompts/critic.md`.
"""

from __future__ import annotations

from crewbus_agents.roles.base import Role, json_text
from crewbus_contracts import Critique, CritiqueRequest


class Critic(Role[CritiqueRequest]):
    name = "critic"
    request_type = CritiqueRequest
    prompt_file = "critic.md"
    output_type = Critique

    def user_message(self, request: CritiqueRequest) -> str:
        return (
            f"Task:\n{request.task_text}\n\n"
            f"Plan that was followed:\n{json_text(request.plan)}\n\n"
            f"Answer to judge:\n{request.answer}\n\n"
            f"The task's bar: {request.min_score:.2f}"
        )
