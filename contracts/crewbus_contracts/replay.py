"""Replay and shadow: a task run again under a candidate variant, on a production task's
record (replay) or beside a live one (shadow), with no side effects.

`ReplayOptions` rides on the task (`SubmitTask.replay`, `TaskState.replay`) and on every
piece of its work (`PlanRequest`/`StepRequest`/`CritiqueRequest.replay`): the agents
enforce it in the tool loop and in memory recall (see docs/replay.md). The shadow run's
configuration is `crewbus_contracts.shadow`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from crewbus_contracts.base import Model

ReplayMode = Literal["replay", "shadow"]
"""`replay`: a recorded production task run again, its recorded tool results and memory
recalls served back; `shadow`: a live task's twin, run while the original runs, so
nothing of the original is recorded yet (every tool call is a miss)."""
ALL_READ_ONLY = "*"
"""In `live_tools`: every read-only tool may run live."""
SOURCE_TASK_KEY = "crewbus.source_task"
"""Task metadata of a replayed or shadow task: the production task it runs again."""


class ReplayOptions(Model):
    """How a replayed or shadow task treats tools and memory. A tool with side effects
    (it needs approval, writes, calls out, or does not declare itself read-only) never
    runs; a read-only tool runs live only when named in `live_tools`."""

    source_task_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """The production task whose record (trace) the tool calls and recalls come from."""
    mode: ReplayMode = "replay"
    live_tools: Annotated[list[str], msgspec.Meta(max_length=64)] = []
    """Read-only tools that may run live on a call the record does not hold (`*`: all)."""
    live_memory: bool = False
    """Recall from the live memory instead of the recording (never written to either way)."""
