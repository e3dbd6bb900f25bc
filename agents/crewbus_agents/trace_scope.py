"""Where one piece of agent work writes its spans: under its `invoke_agent` span, for its
task, round and step. Without a tracer every method quietly does nothing."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing import (
    ChatSpanObserver,
    SpanPlace,
    Tracer,
    write_memory_search,
    write_tool_call,
)
from crewbus_contracts import WorkRequest


class TraceScope:
    def __init__(
        self, tracer: Tracer | None, parent: TraceContext | None, request: WorkRequest,
        step_id: str, prompt_version: str,
    ) -> None:
        self.tracer = tracer
        self.place = SpanPlace(request.task_id, parent, request.round, step_id)
        self.prompt_version = prompt_version

    def chat_observer(self) -> ChatSpanObserver | None:
        """One `chat <model>` span per model turn, failed and rejected turns included."""
        if self.tracer is None:
            return None
        return ChatSpanObserver(self.tracer, self.place, self.prompt_version)

    async def tool_call(self, tool: str, call_id: str, arguments: str, outcome: Any) -> None:
        if self.tracer is not None:
            await write_tool_call(
                self.tracer, self.place, tool=tool, call_id=call_id, arguments=arguments,
                outcome=outcome,
            )

    async def memory_search(
        self, query: str, hits: Sequence[Any], started: float, limit: int,
        error: str | None = None, kind: str | None = None, replay_match: str | None = None,
    ) -> None:
        if self.tracer is not None:
            await write_memory_search(
                self.tracer, self.place, query=query, hits=hits, start=started,
                end=time.time(), limit=limit, error=error, kind=kind,
                replay_match=replay_match,
            )
