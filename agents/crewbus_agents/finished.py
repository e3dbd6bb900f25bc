"""Tasks this replica has heard end, so it does not start work whose result would be thrown
away. Learned from the task events, with no round trip per work item; a replica that missed
an event only does some useless work, which the orchestrator then ignores."""

from __future__ import annotations

from collections import OrderedDict

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from crewbus_contracts import subjects
from crewbus_contracts.events import TERMINAL_KINDS


class FinishedTasks:
    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    async def listen(self, nc: NATS) -> None:
        for kind in TERMINAL_KINDS:
            await nc.subscribe(subjects.events("*", kind), cb=self._on_event)

    async def _on_event(self, msg: Msg) -> None:
        self.add(subjects.part(subjects.EVENTS, "task_id", msg.subject))

    def add(self, task_id: str) -> None:
        self._ids[task_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids
