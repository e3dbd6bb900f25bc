"""An agent service's settings (CREWBUS_* environment variables)."""

from __future__ import annotations

from crewbus.settings import BusSettings


class AgentSettings(BusSettings, kw_only=True, frozen=True):
    concurrency: int = 4
    """Work items one replica handles at once (model calls are I/O bound)."""
