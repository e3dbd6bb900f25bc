"""Exactly once under kill -9: the executor (a real process) dies after an MCP tool ran
and before the step was acked; the redelivered step replays the recorded result instead
of calling the server again. The same run shows a header secret given to the server
never reaching the trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.tracing import read_trace
from crewbus_contracts import SubmitTask
from tests.mcp_helpers import (
    free_port,
    start_http_server,
    wait_for_http,
    write_servers,
    write_test_server,
)
from tests.stack import PROCESS_START_S, connect, service_env, spawn_service, wait_for_state

pytestmark = pytest.mark.anyio

SECRET = "hdr-value-5b1f0c2e9a"
"""Sent as the X-Api-Key header; its variable's name does not look secret, so only the
servers file's rule (a secret-looking header) keeps it out of traces."""


async def test_an_mcp_call_happens_once_when_the_executor_dies_before_its_ack(
    nats_server: NatsServer, processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    script, ledger, port = write_test_server(tmp_path), tmp_path / "ledger", free_port()
    processes.append(start_http_server(script, port, ledger, tmp_path / "mcp.log"))
    await wait_for_http(port, processes[-1])
    servers = write_servers(tmp_path / "mcp.json", {"pay": {
        "url": f"http://127.0.0.1:{port}/mcp", "headers": {"X-Api-Key": "${PAY_HDR}"}}})
    sim = SimulatedModel()
    sim.script(
        "executor",
        SimReply(tool_calls=[("pay__echo", json.dumps({"text": "charged"})),
                             ("pay__header", json.dumps({"name": "X-Api-Key"}))]),
        SimReply(content="slow answer that never arrives", delay_s=30),
        SimReply(content="Charged once."),
    )
    model_url = await sim.start()
    env = service_env(nats_server.url, model_url)
    env.update(CREWBUS_MCP_SERVERS=str(servers), PAY_HDR=SECRET,
               CREWBUS_TOOLS_WORKSPACE_ROOT=str(tmp_path / "workspaces"),
               CREWBUS_DATA_DIR=str(tmp_path / "data"))
    try:
        for service in ("orchestrator", "planner", "researcher", "critic"):
            processes.append(spawn_service(service, env, tmp_path / "logs"))
        doomed = spawn_service("executor", env, tmp_path / "logs")
        processes.append(doomed)
        nc = await connect(nats_server.url)
        client = CrewbusClient(nc)
        accepted = await client.submit(SubmitTask(text="Charge the customer"),
                                       timeout_s=PROCESS_START_S)
        with anyio.fail_after(90):
            while len([a for a, _ in sim.requests if a == "executor"]) < 2:
                await anyio.sleep(0.1)
        assert ledger.read_text() == "echo charged\n"  # the tool ran; the step is not acked
        os.kill(doomed.pid, signal.SIGKILL)
        processes.append(spawn_service("executor", env, tmp_path / "logs"))
        state = await wait_for_state(client, accepted.task_id, ("completed", "failed"), 120)
        spans = [s for s in await read_trace(client.js, accepted.task_id) if s.kind == "tool"]
        await nc.close()
    finally:
        await sim.stop()
    assert state.status == "completed", state.error
    assert state.rounds[0].steps["e1"].output == "Charged once."
    assert state.rounds[0].steps["e1"].attempt >= 2
    assert ledger.read_text() == "echo charged\n"  # replayed, not called again
    header_spans = [s for s in spans if s.name == "execute_tool pay__header"]
    assert header_spans and all(s.attributes["crewbus.tool.server"] == "pay"
                                for s in header_spans)
    assert any(s.attributes["crewbus.tool.replayed"] for s in spans)
    dumped = json.dumps([s.output for s in spans]) + json.dumps([s.input for s in spans])
    assert SECRET not in dumped and "[REDACTED]" in dumped
