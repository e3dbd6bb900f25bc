"""A decision's publications, saved with the task state before any of them is published.

The orchestrator decides, saves the new state *with* what the decision will publish (the
outbox), publishes it, then clears it. So nothing is published from a decision that lost
its revision race, and a crash between the save and the publish loses nothing: whoever
touches the task next publishes the outbox again (JetStream drops what already arrived,
by `Nats-Msg-Id`) before deciding anything new.
"""

from __future__ import annotations

import msgspec

from crewbus_contracts.events import TaskEvent
from crewbus_contracts.work import WorkRequest


class Dispatch(msgspec.Struct, tag_field="kind", tag="dispatch"):
    """Work for an agent role, published on `crewbus.work.<role>`."""

    role: str
    request: WorkRequest
    msg_id: str
    """JetStream de-duplication id: the same decision dispatches the same work once."""


class Emit(msgspec.Struct, tag_field="kind", tag="emit"):
    """A task event, published on `crewbus.events.<task_id>.<kind>`."""

    event: TaskEvent
    msg_id: str


OutboxEntry = Dispatch | Emit
