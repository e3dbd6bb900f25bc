"""What a decision asks the orchestrator to publish: work to dispatch, events to emit.

They are contracts (`crewbus_contracts.outbox`) because they are saved in the task state's
outbox before they are published.
"""

from __future__ import annotations

from crewbus_contracts.outbox import Dispatch, Emit, OutboxEntry

Action = OutboxEntry

__all__ = ["Action", "Dispatch", "Emit"]
