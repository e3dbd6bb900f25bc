"""What a replayed task is served from: the recorded task's trace, read back as its tool
calls (name, canonical arguments, outcome) and its memory recalls (query, kind, hits).

The trace is the record (docs/replay.md says what it keeps and what that costs): a tool
span keeps the call's arguments in and its outcome out, a `memory_search` span the query,
the kind searched for and every hit. Spans of calls re-read from the exactly-once record
(`crewbus.tool.replayed`) are the same calls again and are skipped. Secrets were redacted
before the spans were written, so a replay sees `[REDACTED]` where the original saw one.
A shadow task has no recording: the task it follows is still running.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js import JetStreamContext

from crewbus.memory.client import MemoryClient
from crewbus.telemetry import metrics
from crewbus.tracing import read_trace
from crewbus_agents.recall import Recall
from crewbus_agents.tools import RecordedCall, ToolOutcome, canonical_arguments
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import MemoryKind
from crewbus_contracts.memory import MemoryHit
from crewbus_contracts.replay import ReplayOptions
from crewbus_contracts.traces import Span

log = logging.getLogger(__name__)

CACHED_RECORDINGS = 64
"""Recordings kept per agent process: a replay runs many steps of one source task."""


@dataclass(frozen=True)
class Recording:
    calls: list[RecordedCall] = field(default_factory=list)
    recalls: dict[tuple[str, str | None], list[MemoryHit]] = field(default_factory=dict)
    """(query, kind) -> the hits of the first recall of that query and kind."""


EMPTY = Recording()


def recording_of(spans: list[Span]) -> Recording:
    """The tool calls (in the order they ended) and recalls of a task's trace."""
    calls = [_call(s) for s in sorted(spans, key=lambda s: s.end)
             if s.kind == "tool" and not s.attributes.get("crewbus.tool.replayed")]
    recalls: dict[tuple[str, str | None], list[MemoryHit]] = {}
    for span in spans:
        if span.kind == "memory" and isinstance(span.input, str):  # a failed one found none
            kind = span.attributes.get("crewbus.memory.kind")
            key = (span.input, str(kind) if kind is not None else None)
            recalls.setdefault(key, _hits(span.output))
    return Recording(calls, recalls)


def _call(span: Span) -> RecordedCall:
    attributes = span.attributes
    tool = str(attributes.get("gen_ai.tool.name") or span.name.removeprefix("execute_tool "))
    status = str(attributes.get("crewbus.tool.status") or span.status)
    output: Any = span.output
    structured = None
    if isinstance(output, dict) and "text" in output:
        output, structured = output.get("text"), output.get("structured")
    error_type = attributes.get("error.type")
    outcome = ToolOutcome(
        tool=tool,
        status=status if status in ("ok", "error", "denied") else "error",  # type: ignore[arg-type]
        output=output if isinstance(output, str) else msgspec.json.encode(output).decode(),
        error=span.error if status != "ok" else None,
        error_type=str(error_type) if error_type is not None else None,
        truncated=bool(attributes.get("crewbus.tool.truncated")),
        structured=structured,
        server=str(attributes["crewbus.tool.server"]) if "crewbus.tool.server" in attributes
        else None,
    )
    return RecordedCall(tool=tool, arguments=canonical_arguments(span.input), outcome=outcome)


def _hits(output: Any) -> list[MemoryHit]:
    found = output.get("hits") if isinstance(output, dict) else None
    try:
        return msgspec.convert(found or [], list[MemoryHit])
    except msgspec.ValidationError as exc:
        log.warning("a recorded recall's hits do not read back: %s", exc)
        return []


class Recordings:
    """The recordings of source tasks, read from their traces once per process."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._cache: OrderedDict[str, Recording] = OrderedDict()

    async def of(self, options: ReplayOptions) -> Recording:
        """What `options` replays: the source task's recording (none for a shadow)."""
        if options.mode == "shadow":
            return EMPTY
        source = options.source_task_id
        found = self._cache.get(source)
        if found is None:
            found = recording_of(await read_trace(self.js, source))
            self._cache[source] = found
            while len(self._cache) > CACHED_RECORDINGS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(source)
        return found


class ReplayRecall(Recall):
    """Recall for a replayed or shadow task: the recorded hits of the same query and kind
    (a miss finds nothing), or the live memory with `live_memory`. Never writes memory."""

    def __init__(self, memory: MemoryClient | None, recording: Recording,
                 options: ReplayOptions) -> None:
        super().__init__(memory if options.live_memory else None)
        self.recording = recording
        self.options = options

    async def search(
        self, query: str, k: int, kind: MemoryKind | None, trace: TraceScope | None
    ) -> list[MemoryHit]:
        mode = self.options.mode
        if self.options.live_memory:
            metrics.record_replay_recall(mode, "live")
            return await super().search(query, k, kind, trace)
        started = time.time()
        recorded = self.recording.recalls.get((query, kind))
        match = "miss" if recorded is None else "hit"
        hits = (recorded or [])[:k]
        metrics.record_replay_recall(mode, match)
        if trace is not None:
            await trace.memory_search(query, hits, started, k, kind=kind, replay_match=match)
        return hits

    async def remember(
        self, text: str, kind: MemoryKind, *, task_id: str, source: str | None,
        metadata: dict[str, str],
    ) -> None:
        """Nothing: a replay's findings are not the crew's memories."""
