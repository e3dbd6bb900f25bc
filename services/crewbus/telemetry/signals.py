"""What the services report, in their own words; this module maps it onto metrics.

Wired to crewbus.telemetry.metrics once that lands (see the metrics issue).
"""

from __future__ import annotations


def bad_input(subject_kind: str, reason: str) -> None:
    """A message was refused: counted by subject kind and reason (never by task)."""


def task_submitted() -> None:
    """A new task entered the TASKS stream."""
