"""The researcher: does a step that finds and summarises facts, with the memories most
like the step in view; cites the ones it relied on and writes its finding back.

Its prompt is `prompts/researcher.md`.
"""

from __future__ import annotations

from crewbus_agents.outcome import WorkOutcome
from crewbus_agents.recall import Recall, Recalled, cited_sources, shown
from crewbus_agents.roles.step import StepAgent
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import StepOutput, StepRequest

RESEARCH_HITS = 5
"""Memories recalled for each step."""


class Researcher(StepAgent):
    name = "researcher"
    prompt_file = "researcher.md"

    async def recall(
        self, request: StepRequest, memory: Recall, trace: TraceScope | None
    ) -> Recalled:
        query = f"{request.step.instruction}\n{request.task_text}"
        hits = await memory.search(query, RESEARCH_HITS, None, trace)
        return shown("Memory excerpts (cite the ids you rely on in `sources`)", hits,
                     request.task_id)

    async def after_work(
        self, request: StepRequest, outcome: WorkOutcome, recalled: Recalled, memory: Recall
    ) -> None:
        """Cite what was recalled, then remember the finding with the ids it came from."""
        output = outcome.value
        if not isinstance(output, StepOutput):
            return
        output.sources = cited_sources(output, recalled.ids)
        await memory.remember(
            f"{request.step.instruction}\n\n{output.content}", "finding",
            task_id=request.task_id, source=",".join(output.sources) or None,
            metadata={"step": request.step.id, "round": str(request.round),
                      "sources": ",".join(output.sources)},
        )
