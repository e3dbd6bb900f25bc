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
from crewbus.tracing import read_trace
from crewbus_contracts import SubmitTask, TaskCompleted, TaskFailed, TaskLimits
from tests.dashboards_helper import is_driven, load_generator, shows_activity
from tests.prometheus_helper import PrometheusServer
from tests.replay_helpers import CANDIDATE, make_candidate, planner, use
from tests.stack import connect, service_env, spawn_service

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]

SERVICES = ("orchestrator", "memory", "planner", "researcher", "executor", "critic")



WINDOW = "5m"
"""The rate window: the replay ran a while before the panels are read on a busy machine."""


def has_data(prom: PrometheusServer, panel: str, promql: str) -> bool:
    result = prom.query(promql)
    return shows_activity(result) if is_driven(panel) else bool(result)


async def crewbus_cli(nats_url: str, env: dict[str, str], *argv: str) -> str:
    done = await anyio.run_process([sys.executable, "-m", "crewbus", *argv, "--nats", nats_url],
                                   env=env, check=False)
    assert done.returncode == 0, (argv, done.stderr.decode())
    return done.stdout.decode()


async def replay_and_shadow(nats_url: str, sim: SimulatedModel, env: dict[str, str]) -> None:
    """For the replay and shadow panels: a task whose executor calls the calculator,
    replayed under a candidate that also makes a new call (one served, one run live),
    then a live task with a shadow twin (its calls run live, its memory read live)."""
    sim.script("planner", planner(lambda task, candidate: [
        use("calculator", {"expression": "6*7"}),
        *([use("calculator", {"expression": "1+1"})] if candidate else [])]))
    nc = await connect(nats_url)
    client = CrewbusClient(nc)
    try:
        await make_candidate(client)
        recorded = await finished(client, "Compute the product of six and seven")
        with anyio.fail_after(120):  # the replay serves what the trace recorded
            while not any(s.kind == "tool" for s in await read_trace(client.js, recorded)):
                await anyio.sleep(0.2)
        out = await crewbus_cli(nats_url, env, "replay", "--variant", CANDIDATE, "--name",
                                "rp", "--since", "1h", "--limit", "1", "--live-tools",
                                "calculator", "--quiet")
        assert "tool calls 1 matched, 1 missed" in out, out
        await crewbus_cli(nats_url, env, "shadow", "start", "--variant", CANDIDATE,
                          "--sample", "100%", "--name", "sh")
        await finished(client, "Compute the product of two and three")
    finally:
        await nc.close()


async def finished(client: CrewbusClient, text: str) -> str:
    accepted = await client.submit(SubmitTask(text=text, limits=TaskLimits(max_rounds=1)),
                                   timeout_s=30)
    with anyio.fail_after(120):  # a loaded machine: see tests/stack.py PROCESS_START_S
        async for event in client.events(accepted.task_id):
            if isinstance(event, TaskCompleted | TaskFailed):
                assert isinstance(event, TaskCompleted), event
    return accepted.task_id


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
    prices = tmp_path / "prices.json"  # a priced model, so the spend panels are above 0
    prices.write_text(json.dumps({"crewbus-simulated": {
        "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}))
    env["CREWBUS_PRICES_FILE"] = str(prices)
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
        await replay_and_shadow(nats_server.url, sim, env)
        # Until every panel has data (rates need a scrape or two after the increases),
        # instead of a fixed wait: a busy machine gets the time it needs. The replay and
        # shadow series exist at 0 from the start, so their panels want a value above 0.
        queries = list(load_generator().panel_queries())
        with anyio.move_on_after(60):
            while True:
                empty = [f"{q.dashboard} / {q.panel}: {q.promql(WINDOW)}"
                         for q in queries if not has_data(prom, q.panel, q.promql(WINDOW))]
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
