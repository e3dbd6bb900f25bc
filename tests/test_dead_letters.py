"""After the last delivery attempt, work lands in the dead-letter stream with its reason and
the task fails saying why, whether the worker gave up or died holding the message."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.llm.simulated_replies import default_reply
from crewbus_contracts import StepStarted, SubmitTask, TaskFailed
from tests.stack import final_event, in_process_stack, service_env, spawn_service

pytestmark = pytest.mark.anyio


def dead_letters(role: str, reason: str) -> float:
    labels = {"role": role, "reason": reason}
    return REGISTRY.get_sample_value("crewbus_dead_letters_total", labels) or 0.0


async def test_work_that_fails_every_delivery_is_dead_lettered_with_its_reason(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    model.script("researcher", lambda body: SimReply(content="overloaded", status=503))
    before = dead_letters("researcher", "max_deliveries")
    async with in_process_stack(nats_server.url, model_url, max_deliver=2) as client:
        accepted = await client.submit(SubmitTask(text="Research something"))
        event = await final_event(client, accepted.task_id, timeout_s=60)
        dlq = await client.js.get_last_msg("CREWBUS_DLQ", "crewbus.dlq.researcher")
    assert isinstance(event, TaskFailed), event
    assert event.error.code == "step_failed"
    assert "failed on all 2 deliveries" in event.error.message
    assert "503" in event.error.message
    assert dlq.headers is not None
    assert "failed on all 2 deliveries" in dlq.headers["Crewbus-Dead-Letter-Reason"]
    assert accepted.task_id.encode() in (dlq.data or b"")
    assert dead_letters("researcher", "max_deliveries") >= before + 1  # r1, and maybe r2


async def test_a_worker_that_dies_on_the_last_delivery_is_dead_lettered_by_the_orchestrator(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    def slow(body: dict[str, Any]) -> SimReply:
        return dataclasses.replace(default_reply(body), delay_s=30)

    sim = SimulatedModel()
    sim.script("researcher", slow)
    url = await sim.start()
    researcher: subprocess.Popen[bytes] | None = None
    try:
        env = service_env(nats_server.url, url, max_deliver=1)
        async with in_process_stack(nats_server.url, url, roles=("planner", "executor", "critic"),
                                    max_deliver=1) as client:
            researcher = spawn_service("researcher", env, tmp_path / "logs")
            accepted = await client.submit(SubmitTask(text="Research slowly"), timeout_s=30)
            with anyio.fail_after(30):
                async for e in client.events(accepted.task_id, until_final=False):
                    if isinstance(e, StepStarted) and e.role == "researcher":
                        break
            os.kill(researcher.pid, signal.SIGKILL)
            event = await final_event(client, accepted.task_id, timeout_s=60)
            dlq = await client.js.get_last_msg("CREWBUS_DLQ", "crewbus.dlq.researcher")
    finally:
        if researcher is not None and researcher.poll() is None:
            researcher.kill()
        await sim.stop()
    assert isinstance(event, TaskFailed), event
    assert "without a result" in event.error.message
    assert dlq.headers is not None and "crashed" in dlq.headers["Crewbus-Dead-Letter-Reason"]
