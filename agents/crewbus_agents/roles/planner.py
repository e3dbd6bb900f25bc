"""The planner: turns the task into steps, with similar past tasks and their critiques in
view, so that a mistake the critic caught once is not planned again.

Its prompt is `prompts/planner.md`. An invalid plan whose step graph has one obvious fix
is repaired instead of sent back to the model (`plan_repair.py`), unless the task turned
degrading off.
"""

from __future__ import annotations

from typing import Any

from crewbus.llm.adapter import Repair
from crewbus_agents.recall import Recall, Recalled, shown
from crewbus_agents.roles.base import Role, json_text
from crewbus_agents.roles.plan_repair import repair_plan_reply
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import Plan, PlanRequest

PAST_TASKS = 3
"""Past tasks, and as many past critiques, recalled for each plan."""


class Planner(Role[PlanRequest]):
    name = "planner"
    request_type = PlanRequest
    prompt_file = "planner.md"
    output_type = Plan

    def user_message(self, request: PlanRequest) -> str:
        parts = [f"Task:\n{request.task_text}"]
        for past in request.past_rounds:
            parts.append(
                f"Past round {past.round} plan:\n{json_text(past.plan)}\n"
                f"Its answer:\n{past.answer}\n"
                f"Critique (score {past.critique.score:.2f}, {past.critique.verdict}):\n"
                f"reasons: {json_text(past.critique.reasons)}\n"
                f"suggestions: {json_text(past.critique.suggestions)}"
            )
        return "\n\n".join(parts)

    async def recall(
        self, request: PlanRequest, memory: Recall, trace: TraceScope | None
    ) -> Recalled:
        hits = await memory.search(request.task_text, PAST_TASKS, "task", trace)
        hits += await memory.search(request.task_text, PAST_TASKS, "critique", trace)
        return shown("Similar past tasks and the critiques they received", hits,
                     request.task_id)

    def repair(self, request: PlanRequest) -> Repair[Any] | None:
        """Repairs degrade the plan, so a task that turned degrading off gets none."""
        return repair_plan_reply if request.allow_repair else None
