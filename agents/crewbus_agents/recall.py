"""What an agent remembers before it asks its model, and what it writes back.

- The planner recalls similar past tasks and critiques, so a mistake the critic caught
  once is not planned again.
- The researcher recalls documents and findings for its step and cites them by memory id.
- The researcher writes its findings back, with the ids they came from.
Memory is optional: without a memory service every call here degrades to "nothing found".
"""

from __future__ import annotations

import logging
import time

from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus_agents.tools import ToolFailed
from crewbus_agents.tools.memory import MemoryHit as ToolMemoryHit
from crewbus_agents.tools.memory import MemorySearchFn
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import PlanRequest, StepOutput, StepRequest, WorkRequest
from crewbus_contracts.memory import MemoryHit

log = logging.getLogger(__name__)

PAST_TASKS = 3
RESEARCH_HITS = 5


class Recall:
    def __init__(self, memory: MemoryClient | None) -> None:
        self.memory = memory

    async def context(
        self, role: str, request: WorkRequest, trace: TraceScope | None = None
    ) -> tuple[str, list[str]]:
        """A prompt section of recalled memories and their ids (empty when none)."""
        match request:
            case PlanRequest() if role == "planner":
                hits = await self._search(request.task_text, PAST_TASKS, "task", trace)
                hits += await self._search(request.task_text, PAST_TASKS, "critique", trace)
                title = "Similar past tasks and the critiques they received"
            case StepRequest() if role == "researcher":
                query = f"{request.step.instruction}\n{request.task_text}"
                hits = await self._search(query, RESEARCH_HITS, None, trace)
                title = "Memory excerpts (cite the ids you rely on in `sources`)"
            case _:
                return "", []
        hits = [h for h in hits if h.task_id != request.task_id]
        if not hits:
            return "", []
        lines = [f"{title}:"]
        for hit in hits:
            origin = f" from {hit.source}" if hit.source else ""
            lines.append(f"[memory:{hit.id}] ({hit.kind}{origin}, score {hit.score:.2f})\n"
                         f"{hit.text}")
        return "\n\n".join(lines), [h.id for h in hits]

    async def remember_finding(
        self, request: StepRequest, output: StepOutput, recalled: list[str]
    ) -> None:
        if self.memory is None:
            return
        metadata = {"step": request.step.id, "round": str(request.round),
                    "sources": ",".join(output.sources)}
        try:
            await self.memory.remember(
                f"{request.step.instruction}\n\n{output.content}", "finding",
                task_id=request.task_id, source=",".join(output.sources) or None,
                metadata=metadata,
            )
        except MemoryClientError as exc:
            log.info("finding not remembered: %s", exc)

    async def _search(
        self, query: str, k: int, kind: str | None, trace: TraceScope | None
    ) -> list[MemoryHit]:
        if self.memory is None:
            return []
        started = time.time()
        try:
            hits = await self.memory.search(query, k, kind=kind)  # type: ignore[arg-type]
        except MemoryClientError as exc:
            log.info("memory not available for recall: %s", exc)
            if trace is not None:
                await trace.memory_search(query, [], started, k, error=str(exc))
            return []
        if trace is not None:
            await trace.memory_search(query, hits, started, k)
        return hits


def cited_sources(output: StepOutput, recalled: list[str]) -> list[str]:
    """The memory ids the step relied on: those the model cited, else all it was shown."""
    cited = [s for s in output.sources if s in recalled]
    others = [s for s in output.sources if s not in recalled]
    return (cited or recalled) + others


def memory_search_fn(memory: MemoryClient) -> MemorySearchFn:
    """The executor's `memory_search` tool, backed by the memory service; a memory that is
    not running answers as the tool's error, which the model reads."""

    async def search(query: str, limit: int) -> list[ToolMemoryHit]:
        try:
            hits = await memory.search(query, limit)
        except MemoryClientError as exc:
            raise ToolFailed(f"memory is not available: {exc.message}") from exc
        return [ToolMemoryHit(id=h.id, score=h.score, text=h.text, source=h.source or "")
                for h in hits]

    return search
