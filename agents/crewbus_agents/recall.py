"""An agent's way to memory: traced searches, a prompt section of what was found, and
writes. What each role searches for and writes back is the role's (see `roles/`).

Memory is optional: without a memory service every call here degrades to "nothing found".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus_agents.tools import ToolFailed
from crewbus_agents.tools.memory import MemoryHit as ToolMemoryHit
from crewbus_agents.tools.memory import MemorySearchFn
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import MemoryKind, StepOutput
from crewbus_contracts.memory import MemoryHit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recalled:
    """What a role recalled before asking its model: a prompt section, the ids it shows
    and, in the same order, the memories it shows."""

    text: str = ""
    ids: list[str] = field(default_factory=list)
    hits: list[MemoryHit] = field(default_factory=list)


NOTHING = Recalled()


class Recall:
    def __init__(self, memory: MemoryClient | None) -> None:
        self.memory = memory

    async def search(
        self, query: str, k: int, kind: MemoryKind | None, trace: TraceScope | None
    ) -> list[MemoryHit]:
        """Up to `k` memories like `query` (of `kind`), each search traced; none on error."""
        if self.memory is None:
            return []
        started = time.time()
        try:
            hits = await self.memory.search(query, k, kind=kind)
        except MemoryClientError as exc:
            log.info("memory not available for recall: %s", exc)
            if trace is not None:
                await trace.memory_search(query, [], started, k, error=str(exc), kind=kind)
            return []
        if trace is not None:
            await trace.memory_search(query, hits, started, k, kind=kind)
        return hits

    async def remember(
        self, text: str, kind: MemoryKind, *, task_id: str, source: str | None,
        metadata: dict[str, str],
    ) -> None:
        """Write a memory; a memory that is not running loses it (logged), the work goes on."""
        if self.memory is None:
            return
        try:
            await self.memory.remember(text, kind, task_id=task_id, source=source,
                                       metadata=metadata)
        except MemoryClientError as exc:
            log.info("%s not remembered: %s", kind, exc)


def shown(title: str, hits: list[MemoryHit], task_id: str) -> Recalled:
    """`hits` as a prompt section under `title`, without the task's own memories."""
    hits = [h for h in hits if h.task_id != task_id]
    if not hits:
        return NOTHING
    lines = [f"{title}:"]
    for hit in hits:
        origin = f" from {hit.source}" if hit.source else ""
        lines.append(f"[memory:{hit.id}] ({hit.kind}{origin}, score {hit.score:.2f})\n"
                     f"{hit.text}")
    return Recalled("\n\n".join(lines), [h.id for h in hits], hits)


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
