"""What one piece of agent work produced, before it becomes a result message."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from crewbus_contracts import ApprovalRequest, TokenUsage


@dataclass
class WorkOutcome:
    model: str
    simulated: bool
    value: msgspec.Struct | None = None
    error: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_usd: float | None = 0.0
    awaiting_approval: ApprovalRequest | None = None
    repairs: list[str] = field(default_factory=list)
    """What was fixed in the model's reply (a repaired plan)."""
