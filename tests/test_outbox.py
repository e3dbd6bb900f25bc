"""The outbox: a decision is saved before anything it decided is published, and an
orchestrator that dies between the save and the publish loses nothing.

The doomed orchestrator stops dead right after saving the chosen decision: it never
publishes, never acks, and its connection goes away, which is what the bus sees of a
kill -9 at that instant. A second orchestrator must then finish the task, and every
event must be in the stream exactly once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import nats
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.gateway import start_gateway
from crewbus.orchestrator.service import Orchestrator
from crewbus_contracts import SubmitTask, TaskCompleted, event_kind, subjects
from crewbus_contracts.outbox import Emit
from crewbus_contracts.state import TaskState
from tests.stack import final_event, in_process_agents, orchestrator_settings, wait_for_state

pytestmark = pytest.mark.anyio


class DiesAfterSaving(Orchestrator):
    """Saves the decision that emits `kind`, then hangs before publishing any of it."""

    kind = ""
    died: anyio.Event

    async def _publish_outbox(self, state: TaskState, revision: int) -> bool:
        emits = [e for e in state.outbox if isinstance(e, Emit)]
        if any(event_kind(e.event) == self.kind for e in emits) and not self.died.is_set():
            self.died.set()
            await anyio.sleep_forever()
        return await super()._publish_outbox(state, revision)


async def stored_events(client: CrewbusClient, task_id: str) -> list[tuple[str, str]]:
    """(kind, Nats-Msg-Id) of every event the stream holds for the task, in order."""
    info = await client.js.stream_info(subjects.EVENTS_STREAM, subjects.events(task_id))
    found: list[tuple[str, str]] = []
    if not info.state.subjects:
        return found
    sub = await client.js.subscribe(subjects.events(task_id), ordered_consumer=True)
    try:
        with anyio.fail_after(30):
            async for msg in sub.messages:
                msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")  # agents' step_started: none
                found.append((msg.subject.rsplit(".", 1)[-1], msg_id))
                if msg.metadata.num_pending == 0:
                    break
    finally:
        await sub.unsubscribe()
    return found


@pytest.mark.parametrize("kind", ["task_submitted", "task_planned", "task_completed"])
async def test_an_orchestrator_dying_between_save_and_publish_loses_and_repeats_nothing(
    kind: str, nats_server: NatsServer, model_url: str,
) -> None:
    settings = orchestrator_settings(nats_server.url)
    async with in_process_agents(nats_server.url, model_url) as client:
        doomed_nc = await nats.connect(nats_server.url)
        doomed = await DiesAfterSaving.create(doomed_nc, doomed_nc.jetstream(), settings)
        doomed.kind, doomed.died = kind, anyio.Event()
        async with anyio.create_task_group() as tg:
            await start_gateway(doomed_nc, doomed_nc.jetstream(), settings.max_submit_bytes)
            await tg.start(doomed.run)
            accepted = await client.submit(SubmitTask(text="Compare two queues"), timeout_s=30)
            with anyio.fail_after(60):
                await doomed.died.wait()
            tg.cancel_scope.cancel()
        await doomed_nc.close()
        task_id = accepted.task_id

        saved = await client.state(task_id)
        assert saved is not None and saved.outbox, "the decision was saved with its outbox"
        assert kind not in [k for k, _ in await stored_events(client, task_id)]

        survivor_nc = await nats.connect(nats_server.url)
        survivor = await Orchestrator.create(survivor_nc, survivor_nc.jetstream(), settings)
        async with anyio.create_task_group() as tg:
            await start_gateway(survivor_nc, survivor_nc.jetstream(), settings.max_submit_bytes)
            await tg.start(survivor.run)
            final = await final_event(client, task_id, timeout_s=90)
            state = await wait_for_state(client, task_id, ("completed",), timeout_s=30)
            with anyio.fail_after(30):  # a finished task leaves the replica's cache
                while survivor.store.in_cache(task_id):
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        await survivor_nc.close()

    assert isinstance(final, TaskCompleted)
    assert final.result == state.result and final.result.answer
    assert state.outbox == []
    events = await _events_after(nats_server, task_id)
    ids = Counter(msg_id for _, msg_id in events if msg_id)
    assert [i for i, n in ids.items() if n > 1] == [], "an event was published twice"
    kinds = Counter(k for k, _ in events)
    assert kinds["task_submitted"] == 1 and kinds["task_planned"] == 1
    assert kinds["task_completed"] == 1


async def _events_after(nats_server: NatsServer, task_id: str) -> list[Any]:
    nc = await nats.connect(nats_server.url)
    try:
        return await stored_events(CrewbusClient(nc), task_id)
    finally:
        await nc.close()
