"""What a tool call gets (ToolContext) and what it gives back (ToolOutcome)."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import msgspec

from crewbus_agents.tools.settings import ToolSettings
from crewbus_contracts.base import Model

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_MADE_KEPT = 1024
_made: OrderedDict[Path, None] = OrderedDict()
"""Workspaces this process made or found, newest last: a task's later steps skip the
mkdir. Bounded, so a long-lived executor forgets old tasks' workspaces."""

OutcomeStatus = Literal["ok", "error", "denied"]


class ToolContext(msgspec.Struct, kw_only=True, frozen=True):
    """Where and for whom a tool runs. One workspace directory per task, shared by its steps."""

    task_id: str
    step_id: str
    workspace: Path
    settings: ToolSettings
    round: int = 1
    """The planning round: a re-planned step may reuse an id, so call keys include it."""

    @classmethod
    def create(
        cls, settings: ToolSettings, task_id: str, step_id: str, round: int = 1
    ) -> ToolContext:
        """The context for one step, creating the task's workspace (mode 0700) if needed."""
        workspace = workspace_for(settings, task_id)
        _make(workspace)
        return cls(
            task_id=task_id, step_id=step_id, workspace=workspace, settings=settings, round=round
        )


def workspace_for(settings: ToolSettings, task_id: str) -> Path:
    """The task's workspace; an id unfit for a directory name is replaced by its hash."""
    name = task_id if _SAFE_ID.match(task_id) else _digest(task_id)
    return settings.workspace_root_path() / name


def _make(workspace: Path) -> None:
    """Create `workspace` (mode 0700) unless this process recently made or found it."""
    if workspace in _made:
        _made.move_to_end(workspace)
        return
    workspace.mkdir(parents=True, exist_ok=True, mode=0o700)
    _made[workspace] = None
    if len(_made) > _MADE_KEPT:
        _made.popitem(last=False)


def _digest(text: str) -> str:
    return "t-" + hashlib.sha256(text.encode()).hexdigest()[:32]


class ToolResult(msgspec.Struct, kw_only=True, frozen=True):
    """What a tool may return to give a structured value beside the text the model reads."""

    text: str
    structured: Any = None


class ToolOutcome(Model):
    """The result of one tool call, as recorded (exactly-once) and traced.

    Serializable with msgspec so the bus-backed hooks can keep it in JetStream KV.
    """

    tool: str
    status: OutcomeStatus = "ok"
    output: str = ""
    error: str | None = None
    error_type: str | None = None
    """Low-cardinality name of the failure (an error class name, or `denied`)."""
    truncated: bool = False
    duration_s: float = 0.0
    replayed: bool = False
    """True when this outcome was read from the record instead of running the tool."""
    structured: Any = None
    """A tool's structured result (MCP `structuredContent`), kept beside its text."""
    server: str | None = None
    """The MCP server the tool ran on; None for a tool of this process."""
    replay_match: Literal["hit", "miss"] | None = None
    """In a replayed or shadow task: `hit` (the recorded outcome, nothing ran) or `miss`
    (no recorded call matched; see `crewbus_agents.tools.replay`). None otherwise."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def for_model(self) -> str:
        """The text the model gets as the tool's answer."""
        if self.status == "denied":
            return f"DENIED: this tool call was not allowed. Reason: {self.error}"
        if self.error is not None:
            return f"ERROR ({self.error_type}): {self.error}"
        return self.output

    @classmethod
    def failure(cls, tool: str, exc: BaseException, duration_s: float = 0.0) -> ToolOutcome:
        return cls(
            tool=tool,
            status="error",
            error=str(exc),
            error_type=type(exc).__name__,
            duration_s=duration_s,
        )

    @classmethod
    def denied(cls, tool: str, reason: str) -> ToolOutcome:
        return cls(tool=tool, status="denied", error=reason or "denied", error_type="denied")
