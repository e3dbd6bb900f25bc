"""Durability with real processes: kill -9 a researcher or the orchestrator, restart NATS;
no task is lost and no step result is applied twice."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.llm.simulated_replies import default_reply
from crewbus_contracts import StepFinished, StepStarted, SubmitTask
from tests.stack import PROCESS_START_S, connect, service_env, spawn_service, wait_for_state

pytestmark = pytest.mark.anyio

SLOW_S = 2.5



def slow(body: dict[str, Any]) -> SimReply:
    return dataclasses.replace(default_reply(body), delay_s=SLOW_S)


@pytest.fixture
async def slow_research_model():  # type: ignore[no-untyped-def]
    sim = SimulatedModel()
    sim.script("researcher", slow)
    yield sim, await sim.start()
    await sim.stop()


async def first_start(
    client: CrewbusClient, task_id: str, role: str, timeout_s: float = PROCESS_START_S
) -> StepStarted:
    """The first step_started event of an agent of `role`."""
    with anyio.fail_after(timeout_s):
        async for event in client.events(task_id, until_final=False):
            if isinstance(event, StepStarted) and event.role == role:
                return event
    raise AssertionError("event stream ended")


async def test_kill_9_of_a_researcher_mid_step_lets_the_other_replica_finish_it_once(
    nats_server: NatsServer, slow_research_model: tuple[SimulatedModel, str],
    processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    _, model_url = slow_research_model
    env = service_env(nats_server.url, model_url)
    for service in ("orchestrator", "planner", "executor", "critic"):
        processes.append(spawn_service(service, env, tmp_path / "logs"))
    doomed = spawn_service("researcher", env, tmp_path / "logs")
    processes.append(doomed)
    nc = await connect(nats_server.url)
    client = CrewbusClient(nc)
    accepted = await client.submit(SubmitTask(text="Survey durable queues"),
                                   timeout_s=PROCESS_START_S)
    started = await first_start(client, accepted.task_id, "researcher")
    assert started.worker.endswith(f":{doomed.pid}")
    survivor = spawn_service("researcher", env, tmp_path / "logs")
    processes.append(survivor)
    os.kill(doomed.pid, signal.SIGKILL)
    state = await wait_for_state(client, accepted.task_id, ("completed", "failed"))
    events = [e async for e in client.events(accepted.task_id)]
    await nc.close()
    assert state.status == "completed", state.error
    step = state.rounds[0].steps[started.step_id]
    assert step.worker is not None and step.worker.endswith(f":{survivor.pid}")
    assert step.attempt >= 2
    finished = [e for e in events if isinstance(e, StepFinished) and e.step_id == started.step_id]
    assert len(finished) == 1


async def test_kill_9_of_the_orchestrator_mid_task_and_another_one_completes_it(
    nats_server: NatsServer, slow_research_model: tuple[SimulatedModel, str],
    processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    _, model_url = slow_research_model
    env = service_env(nats_server.url, model_url)
    first = spawn_service("orchestrator", env, tmp_path / "logs")
    processes.append(first)
    for service in ("planner", "researcher", "executor", "critic"):
        processes.append(spawn_service(service, env, tmp_path / "logs"))
    nc = await connect(nats_server.url)
    client = CrewbusClient(nc)
    accepted = await client.submit(SubmitTask(text="Explain redelivery"),
                                   timeout_s=PROCESS_START_S)
    await first_start(client, accepted.task_id, "researcher")
    os.kill(first.pid, signal.SIGKILL)
    await anyio.sleep(SLOW_S)  # results arrive while no orchestrator runs
    processes.append(spawn_service("orchestrator", env, tmp_path / "logs"))
    state = await wait_for_state(client, accepted.task_id, ("completed", "failed"))
    await nc.close()
    assert state.status == "completed", state.error
    assert all(s.status == "done" for s in state.rounds[-1].steps.values())


async def test_services_reconnect_after_a_nats_restart_and_in_flight_tasks_complete(
    nats_server: NatsServer, slow_research_model: tuple[SimulatedModel, str],
    processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    _, model_url = slow_research_model
    env = service_env(nats_server.url, model_url)
    for service in ("orchestrator", "planner", "researcher", "executor", "critic"):
        processes.append(spawn_service(service, env, tmp_path / "logs"))
    nc = await connect(nats_server.url)
    client = CrewbusClient(nc)
    accepted = await client.submit(SubmitTask(text="Survive a broker restart"),
                                   timeout_s=PROCESS_START_S)
    await first_start(client, accepted.task_id, "researcher")
    nats_server.restart()
    state = await wait_for_state(client, accepted.task_id, ("completed", "failed"), 90)
    await nc.close()
    assert state.status == "completed", state.error
    assert all(p.poll() is None for p in processes), "a service died on the NATS restart"


async def test_a_tool_side_effect_happens_once_when_the_executor_dies_before_its_ack(
    nats_server: NatsServer, processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    """kill -9 between the tool call and the ack: the redelivered step replays the recorded
    tool outcome instead of running the snippet again."""
    snippet = "open('ledger.txt', 'a').write('charged\\n')"
    sim = SimulatedModel()
    sim.script(
        "executor",
        SimReply(tool_calls=[("python", json.dumps({"code": snippet}))]),
        SimReply(content="slow answer that never arrives", delay_s=30),
        SimReply(content="Charged once."),
    )
    model_url = await sim.start()
    workspaces = tmp_path / "workspaces"
    env = service_env(nats_server.url, model_url)
    env["CREWBUS_TOOLS_WORKSPACE_ROOT"] = str(workspaces)
    env["CREWBUS_TOOLS_REQUIRES_APPROVAL"] = "[]"
    try:
        for service in ("orchestrator", "planner", "researcher", "critic"):
            processes.append(spawn_service(service, env, tmp_path / "logs"))
        doomed = spawn_service("executor", env, tmp_path / "logs")
        processes.append(doomed)
        nc = await connect(nats_server.url)
        client = CrewbusClient(nc)
        accepted = await client.submit(SubmitTask(text="Charge the customer"),
                                       timeout_s=PROCESS_START_S)
        ledger = workspaces / accepted.task_id / "ledger.txt"
        with anyio.fail_after(60):
            while len([a for a, _ in sim.requests if a == "executor"]) < 2:
                await anyio.sleep(0.1)
        assert ledger.read_text() == "charged\n"  # the tool ran; the step is not acked yet
        os.kill(doomed.pid, signal.SIGKILL)
        processes.append(spawn_service("executor", env, tmp_path / "logs"))
        state = await wait_for_state(client, accepted.task_id, ("completed", "failed"), 90)
        await nc.close()
    finally:
        await sim.stop()
    assert state.status == "completed", state.error
    assert state.rounds[0].steps["e1"].output == "Charged once."
    assert state.rounds[0].steps["e1"].attempt >= 2
    assert ledger.read_text() == "charged\n"
