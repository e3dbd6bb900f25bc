"""A real Prometheus scrapes a running crewbus stack (every service its own process, on
loopback); after a few real tasks every query of every dashboard panel returns data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus_contracts import SubmitTask, TaskCompleted, TaskFailed
from tests.dashboards_helper import load_generator
from tests.prometheus_helper import PrometheusServer
from tests.stack import connect, service_env, spawn_service

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]

SERVICES = ("orchestrator", "memory", "planner", "researcher", "executor", "critic")



@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


async def test_every_dashboard_panel_has_data_after_real_tasks(
    nats_server: NatsServer, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    sim = SimulatedModel()
    model_url = await sim.start()
    ports = {service: free_port() for service in SERVICES}
    env = service_env(nats_server.url, model_url, queue_sample_s=1.0)
    env["CREWBUS_DATA_DIR"] = str(tmp_path / "data")
    env["CREWBUS_CRITIC_STREAM"] = "true"  # time to first token comes from streamed calls
    prom = PrometheusServer(tmp_path, {s: [f"127.0.0.1:{p}"] for s, p in ports.items()})
    try:
        for service in SERVICES:
            processes.append(spawn_service(
                service, {**env, "CREWBUS_METRICS_PORT": str(ports[service])}, tmp_path / "logs"))
        prom.start()
        assert prom.wait_for(f"count(up == 1) == {len(SERVICES)}", 180), prom.log_tail()

        # Real traffic, including the rarer paths the panels show.
        sim.script("planner", SimReply(content="{not json"))  # one validation retry
        low = {"score": 0.3, "verdict": "revise", "reasons": ["too vague"], "suggestions": []}
        sim.script("critic", SimReply(content=json.dumps(low)))  # one re-plan
        nc = await connect(nats_server.url)
        client = CrewbusClient(nc)
        with anyio.fail_after(60):  # /metrics is up before the memory store is open
            while True:
                try:
                    await MemoryClient(nc).stats()
                    break
                except MemoryClientError:
                    await anyio.sleep(0.2)
        await nc.request("crewbus.submit", b"{oops", timeout=10)  # bad input
        for i in range(4):
            accepted = await client.submit(SubmitTask(text=f"Explain consumer groups #{i}"),
                                           timeout_s=30)
            with anyio.fail_after(60):
                async for event in client.events(accepted.task_id):
                    if isinstance(event, TaskCompleted | TaskFailed):
                        assert isinstance(event, TaskCompleted), event
        await nc.close()
        # An experiment, for the Quality dashboard's evaluation panels.
        items = tmp_path / "items.jsonl"
        items.write_text('{"id": "a", "input": {"text": "Explain streams"}, '
                         '"expected": "simulated"}\n')
        for argv in (["dataset", "create", "d", "--from", str(items)],
                     ["eval", "run", "d", "--scorer", "contains", "--name", "e"]):
            done = await anyio.run_process(
                [sys.executable, "-m", "crewbus", *argv, "--nats", nats_server.url],
                env=env, check=False)
            assert done.returncode == 0, done.stderr.decode()
        # Until every panel has data (rates need a scrape or two after the increases),
        # instead of a fixed wait: a busy machine gets the time it needs.
        queries = list(load_generator().panel_queries())
        with anyio.move_on_after(60):
            while True:
                empty = [f"{q.dashboard} / {q.panel}: {q.promql()}"
                         for q in queries if not prom.query(q.promql())]
                if not empty:
                    break
                await anyio.sleep(0.5)
        assert not empty, "panels without data:\n" + "\n".join(empty)
        replicas = {r["metric"]["role"]: float(r["value"][1])
                    for r in prom.query("sum by (role) (crewbus_service_info)")}
        assert replicas == {s: 1.0 for s in SERVICES}
    finally:
        prom.stop()
        await sim.stop()
