"""Spans for work that is timed elsewhere: a tool call, a memory query, an approval.

The tool loop reports a call after it ran (`ToolHooks.on_tool_call`), an approval is
decided long after it was asked for, so these spans are written from what is known at
the end, with the same names and attributes wherever they come from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from crewbus.tracing.draft import SpanDraft, SpanPlace
from crewbus.tracing.tracer import Tracer
from crewbus_contracts.traces import Span


class ToolOutcomeLike(Protocol):
    """The fields of `crewbus_agents.tools.ToolOutcome` a tool span needs."""

    @property
    def status(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def replayed(self) -> bool: ...
    @property
    def truncated(self) -> bool: ...

    # Optional, read when present: `server` (the MCP server the tool ran on),
    # `structured` (its structured result) and `replay_match` (hit or miss, in a replay).


async def write_tool_call(
    tracer: Tracer,
    place: SpanPlace,
    *,
    tool: str,
    call_id: str,
    arguments: str,
    outcome: ToolOutcomeLike,
    end: float | None = None,
) -> Span | None:
    """An `execute_tool <tool>` span ending now (or at `end`), lasting the call's duration."""
    end = time.time() if end is None else end
    context, parent_id = place.ids()
    failed = outcome.status != "ok"
    return await tracer.write(SpanDraft(
        name=f"execute_tool {tool}",
        kind="tool",
        task_id=place.task_id,
        context=context,
        parent_span_id=parent_id,
        start=end - max(0.0, outcome.duration_s),
        end=end,
        round=place.round,
        step_id=place.step_id,
        status="error" if failed else "ok",
        error=(outcome.error or outcome.status) if failed else None,
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            "crewbus.tool.status": outcome.status,
            "crewbus.tool.replayed": outcome.replayed,
            "crewbus.tool.truncated": outcome.truncated,
            "crewbus.tool.server": getattr(outcome, "server", None),
            "crewbus.replay.match": getattr(outcome, "replay_match", None),
            "error.type": outcome.error_type,
        },
        input=_json_or_text(arguments),
        output=_output(outcome),
    ))


def _output(outcome: ToolOutcomeLike) -> Any:
    """The tool's text, and its structured result beside it when it gave one (MCP)."""
    structured = getattr(outcome, "structured", None)
    if structured is None:
        return outcome.output
    return {"text": outcome.output, "structured": structured}


async def write_memory_search(
    tracer: Tracer,
    place: SpanPlace,
    *,
    query: str,
    hits: Sequence[Any],
    start: float,
    end: float | None = None,
    limit: int | None = None,
    error: str | None = None,
    kind: str | None = None,
    replay_match: str | None = None,
) -> Span | None:
    """A `memory_search` span: the query in, each hit (id, score, text) out; with the kind
    searched for, so a replay can serve the same recall back (`replay_match` says whether
    it did)."""
    context, parent_id = place.ids()
    return await tracer.write(SpanDraft(
        name="memory_search",
        kind="memory",
        task_id=place.task_id,
        context=context,
        parent_span_id=parent_id,
        start=start,
        end=time.time() if end is None else end,
        round=place.round,
        step_id=place.step_id,
        status="error" if error else "ok",
        error=error,
        attributes={"crewbus.memory.hits": len(hits), "crewbus.memory.limit": limit,
                    "crewbus.memory.kind": kind, "crewbus.replay.match": replay_match},
        input=query,
        output={"hits": list(hits)},
    ))


async def write_approval(
    tracer: Tracer,
    place: SpanPlace,
    *,
    tool: str,
    arguments: str,
    decision: str,
    requested_at: float,
    decided_at: float | None = None,
    by: str | None = None,
    reason: str | None = None,
) -> Span | None:
    """An `approval <tool>` span from the request to the decision (approved, denied,
    expired); a refusal is not an error of the system, so its status stays ok."""
    context, parent_id = place.ids()
    return await tracer.write(SpanDraft(
        name=f"approval {tool}",
        kind="approval",
        task_id=place.task_id,
        context=context,
        parent_span_id=parent_id,
        start=requested_at,
        end=time.time() if decided_at is None else decided_at,
        round=place.round,
        step_id=place.step_id,
        attributes={
            "gen_ai.tool.name": tool,
            "crewbus.approval.decision": decision,
            "crewbus.approval.by": by,
            "crewbus.approval.reason": reason,
        },
        input=_json_or_text(arguments),
    ))


def _json_or_text(text: str) -> Any:
    """Tool arguments as JSON when they parse (readable in the tree), else the raw text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
