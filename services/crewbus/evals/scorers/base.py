"""What every scorer is: a name, a type, a version, and `score(observation) -> Score`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from crewbus_contracts import TaskState
from crewbus_contracts.evals import DatasetItem, RunItemStatus, Score, ScoreType, ToolCallRecord


@dataclass(frozen=True)
class Observation:
    """Everything a scorer may look at for one run item: the item, and what the run did."""

    item: DatasetItem
    status: RunItemStatus
    answer: str = ""
    output: Any = None
    """A single-role target's structured output as plain JSON values (else None)."""
    state: TaskState | None = None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    cost_usd: float | None = None
    tokens: int = 0
    latency_s: float | None = None
    rounds: int = 0
    critic_score: float | None = None
    error_code: str | None = None


class Scorer(Protocol):
    """One configured scorer. `score` never raises for a bad answer: it returns a Score
    with `error` set (an evaluation error, never a pass)."""

    @property
    def name(self) -> str:
        """The scorer's name in results (its spec's `name`, else its kind)."""
        ...

    @property
    def type(self) -> ScoreType: ...

    @property
    def version(self) -> str:
        """Goes into every Score (`scorer_version`): a changed scorer never silently mixes
        with the old one's results."""
        ...

    def applies_to(self, item: DatasetItem) -> bool:
        """False for an item outside the scorer's `where`: it is not scored, not counted."""
        ...

    async def score(self, observation: Observation) -> Score: ...
