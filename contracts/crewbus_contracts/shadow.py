"""The shadow run (`crewbus shadow start|status|stop`): which live tasks the orchestrator
samples, under which candidate variant, into which pair of experiments, within which
budget. Key `current` of `SHADOW_KV`; written by `crewbus shadow`, watched by the
orchestrator (`crewbus.replay.shadow`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from crewbus_contracts.base import Message
from crewbus_contracts.evals import DATASET_NAME, ScorerSpec
from crewbus_contracts.prompts import VARIANT_NAME
from crewbus_contracts.replay import ALL_READ_ONLY

SHADOW_KEY = "current"
"""The key of the one shadow run in `SHADOW_KV`."""
REPLAY_NAME_MAX = 55
"""A replay or shadow experiment's longest name: its baseline adds `-baseline` and must
still be an experiment name (64 characters)."""

ShadowStatus = Literal["active", "stopped", "budget_exceeded"]


class ShadowConfig(Message, tag="shadow_config"):
    """The shadow run: which live tasks are sampled, under which variant, into which
    experiments, with which budget. Key `current` of `SHADOW_KV`."""

    name: Annotated[str, msgspec.Meta(pattern=DATASET_NAME)]
    """The candidate experiment; the baseline is `<name>-baseline`."""
    variant: Annotated[str, msgspec.Meta(pattern=VARIANT_NAME)]
    sample_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    started_at: float
    status: ShadowStatus = "active"
    metadata_filter: dict[str, str] = {}
    """Only live tasks whose metadata has these values are sampled."""
    budget_usd: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Shadow spend at which the shadow stops (production is never affected)."""
    spent_usd: float = 0.0
    """What the finished shadow tasks cost, counted as they end."""
    shadow_tasks: int = 0
    """Shadow tasks started so far."""
    scorers: list[ScorerSpec] = []
    live_tools: list[str] = msgspec.field(default_factory=lambda: [ALL_READ_ONLY])
    live_memory: bool = True
    stopped_at: float | None = None
    reason: str = ""
    """Why it stopped (`crewbus shadow stop`, the budget)."""

    @property
    def baseline(self) -> str:
        return baseline_name(self.name)


def baseline_name(experiment: str) -> str:
    """The baseline experiment paired with a replay or shadow experiment."""
    return f"{experiment}-baseline"
