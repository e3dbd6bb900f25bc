"""`GET /v1/tasks` and the UI's task list (`Bus.recent`) on a real nats-server: the newest
tasks come first however many were submitted in the window, and the listing reads
windows from the newest back, not a whole day of submissions from its start.

Before, a listing read the day's submissions from the oldest and stopped after 5,000:
after a busy day (a benchmark, say) the UI showed that morning's tasks, not the new ones."""

from __future__ import annotations

import time

import pytest
from nats.aio.client import Client as NATS

from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer
from crewbus.httpapi.bus import Bus
from crewbus.settings import BusSettings
from crewbus_contracts import TaskLimits, TaskState, subjects

pytestmark = pytest.mark.anyio


async def _submitted(bus: Bus, n: int, status: str = "completed") -> list[str]:
    """`n` tasks as the gateway and orchestrator leave them: a stored state and a
    `task_submitted` event each, oldest first."""
    ids = []
    for k in range(n):
        task_id = f"t{k:03d}"
        now = time.time()
        await bus.tasks.create(TaskState(
            task_id=task_id, text=f"task {k}", status=status,  # type: ignore[arg-type]
            limits=TaskLimits(), created_at=now, updated_at=now, deadline_at=now + 60))
        await bus.js.publish(subjects.events(task_id, "task_submitted"), b"{}")
        ids.append(task_id)
    return ids


async def _bus(nc: NATS, nats_server: NatsServer, max_listed: int) -> Bus:
    await ensure_topology(nc.jetstream(), BusSettings(nats_url=nats_server.url))
    bus = await Bus.open(nc)
    bus.max_listed = max_listed
    return bus


async def test_the_newest_tasks_are_listed_first_when_more_were_submitted_than_are_read(
        nc: NATS, nats_server: NatsServer) -> None:
    bus = await _bus(nc, nats_server, max_listed=5)
    ids = await _submitted(bus, 12)

    listed = [s.task_id for s in await bus.recent(None, 3, None)]
    assert listed == ids[::-1][:3]
    completed = [s.task_id for s in await bus.recent(None, 4, "completed")]
    assert completed == ids[::-1][:4]


async def test_a_status_matched_only_by_older_tasks_looks_back_to_since(
        nc: NATS, nats_server: NatsServer) -> None:
    bus = await _bus(nc, nats_server, max_listed=100)
    failed = await _submitted(bus, 2, status="failed")
    for k in range(3):  # newer ones that do not match
        now = time.time()
        await bus.tasks.create(TaskState(
            task_id=f"n{k}", text="newer", status="completed", limits=TaskLimits(),
            created_at=now, updated_at=now, deadline_at=now + 60))
        await bus.js.publish(subjects.events(f"n{k}", "task_submitted"), b"{}")

    assert [s.task_id for s in await bus.recent(None, 10, "failed")] == failed[::-1]
    assert await bus.recent(time.time() + 60, 10, None) == []
