"""A service told to stop (SIGTERM) with work in flight: the handler about to finish is let
finish, the one that is not is handed back (nak) and another replica completes it at once,
not after the ack wait; the stopping service exits 0."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.llm.simulated_replies import default_reply
from crewbus_contracts import StepStarted, SubmitTask
from tests.stack import connect, service_env, spawn_service, wait_for_state

pytestmark = pytest.mark.anyio

ACK_WAIT_S = 120.0
"""Far beyond the test's own deadline: a redelivery in time can only come from the nak."""
NEAR_DONE_S = 1.0
"""r2's model call: it ends within the drain grace (DRAIN_GRACE_S = 2 s)."""
LONG_S = 600.0
"""r1's model call on the first researcher: it would never end in time."""


async def test_sigterm_lets_the_near_done_step_finish_and_hands_the_other_to_a_replica(
    nats_server: NatsServer, processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    first_r1 = {"pending": True}

    def research(body: dict[str, Any]) -> SimReply:
        text = str(body.get("messages"))
        if "(r1)" in text and first_r1["pending"]:
            first_r1["pending"] = False
            return dataclasses.replace(default_reply(body), delay_s=LONG_S)
        return dataclasses.replace(default_reply(body), delay_s=NEAR_DONE_S)

    sim = SimulatedModel()
    sim.script("researcher", research)
    model_url = await sim.start()
    try:
        env = service_env(nats_server.url, model_url, ack_wait_s=ACK_WAIT_S)
        logs = tmp_path / "logs"
        for service in ("orchestrator", "planner", "executor", "critic"):
            processes.append(spawn_service(service, env, logs))
        stopping = spawn_service("researcher", env, logs)
        processes.append(stopping)
        nc = await connect(nats_server.url)
        client = CrewbusClient(nc)
        accepted = await client.submit(SubmitTask(text="Survey graceful stops"), timeout_s=60)
        started: dict[str, StepStarted] = {}
        with anyio.fail_after(90):
            async for event in client.events(accepted.task_id, until_final=False):
                if isinstance(event, StepStarted) and event.role == "researcher":
                    started[event.step_id] = event
                    if {"r1", "r2"} <= started.keys():
                        break
        assert all(e.worker.endswith(f":{stopping.pid}") for e in started.values())
        replica = spawn_service("researcher", env, logs)
        processes.append(replica)

        signalled = time.monotonic()
        stopping.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            while stopping.poll() is None:
                await anyio.sleep(0.05)
        print(f"researcher stopped {time.monotonic() - signalled:.2f}s after SIGTERM")
        assert stopping.returncode == 0

        state = await wait_for_state(client, accepted.task_id, ("completed", "failed"), 90)
        await nc.close()
    finally:
        await sim.stop()
    assert state.status == "completed", state.error
    steps = state.rounds[0].steps
    # r2 was about done: it finished on the stopping replica, first delivery.
    assert steps["r2"].worker is not None and steps["r2"].worker.endswith(f":{stopping.pid}")
    assert steps["r2"].attempt == 1
    # r1 was not: handed back, and redelivered at once to the other replica.
    assert steps["r1"].worker is not None and steps["r1"].worker.endswith(f":{replica.pid}")
    assert steps["r1"].attempt == 2
