"""The orchestrator's settings (CREWBUS_* environment variables)."""

from __future__ import annotations

from crewbus.settings import BusSettings


class OrchestratorSettings(BusSettings, kw_only=True, frozen=True):
    sweep_interval_s: float = 1.0
    """How often unfinished tasks are checked against their deadlines."""
    queue_sample_s: float = 5.0
    """How often queue depth is read from JetStream consumer info for the metrics."""
    concurrency: int = 32
    """Results and submissions handled at once by one replica."""
