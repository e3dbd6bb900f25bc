"""The executor's cancel check against real KV buckets: the task's small `crewbus_active`
key while it is indexed, its state once the key is gone or its end was heard."""

from __future__ import annotations

import time

import msgspec
import pytest

from crewbus.bus import topology
from crewbus.devstack.nats_server import NatsServer
from crewbus.orchestrator import decisions
from crewbus.settings import BusSettings
from crewbus_agents.bus_hooks import BusToolHooks
from crewbus_contracts import SubmitTask, subjects
from tests.stack import connect

pytestmark = pytest.mark.anyio


async def test_the_check_reads_the_index_and_the_state_only_when_the_task_may_be_over(
    nats_server: NatsServer,
) -> None:
    nc = await connect(nats_server.url)
    try:
        js = nc.jetstream()
        await topology.ensure_topology(js, BusSettings(nats_url=nats_server.url))
        tasks = await js.key_value(subjects.TASKS_KV)
        active = await js.key_value(subjects.ACTIVE_KV)
        records = await js.key_value(subjects.TOOL_RECORDS_KV)
        state, _ = decisions.start_task("t-cancel", SubmitTask(text="x"), time.time())
        await active.put("t-cancel", b"1.0")
        await tasks.put("t-cancel", msgspec.json.encode(state))
        heard: set[str] = set()

        def hooks() -> BusToolHooks:
            return BusToolHooks(records, tasks, "t-cancel", {}, active=active, finished=heard)

        assert await hooks().check_cancelled() is None
        decisions.cancel(state, "dave", "wrong task", time.time())
        assert state.status == "cancelled"
        await tasks.put("t-cancel", msgspec.json.encode(state))
        # Saved, not yet taken out of the index: caught as soon as its end is heard...
        heard.add("t-cancel")
        assert "wrong task" in (await hooks().check_cancelled() or "")
        # ...or once the orchestrator takes it out of the index.
        heard.clear()
        await active.delete("t-cancel")
        assert "wrong task" in (await hooks().check_cancelled() or "")
        # Without an index (or before one existed) the state alone decides, as before.
        plain = BusToolHooks(records, tasks, "t-cancel", {})
        assert "wrong task" in (await plain.check_cancelled() or "")
        running = BusToolHooks(records, tasks, "t-unknown", {}, active=active)
        assert await running.check_cancelled() is None
    finally:
        await nc.close()
