"""crewbus as an MCP server (`crewbus mcp serve`), driven by the official SDK's client as
an IDE would: submit and wait with progress, read the result, approve a paused call,
cancel, search memory; over stdio and streamable HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.memory.client import MemoryClient
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings
from crewbus.tracing import task_trace_id
from crewbus_agents.tools import ToolSettings
from tests.mcp_helpers import free_port, wait_for_http
from tests.stack import in_process_stack

pytestmark = pytest.mark.anyio


def crewbus_mcp(nats_url: str, tmp_path: Path) -> StdioServerParameters:
    """The server as an IDE starts it. The MCP client gives the child a minimal
    environment: the test's PYTHONPATH is passed on so the child runs the code under test
    (a worktree's, not whichever checkout the virtualenv was installed from)."""
    env = {"CREWBUS_DATA_DIR": str(tmp_path / "mcp-data"), "CREWBUS_METRICS_PORT": "0"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return StdioServerParameters(
        command=sys.executable, args=["-m", "crewbus", "mcp", "serve", "--stdio",
                                      "--nats", nats_url, "--by", "ide-user"],
        env=env)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    data: dict[str, Any] = result.structured_content
    return data


@pytest.fixture
def tools(tmp_path: Path) -> ToolSettings:
    return ToolSettings(workspace_root=str(tmp_path / "workspaces"))


async def test_an_mcp_client_submits_a_task_and_gets_its_answer_with_progress_on_the_way(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings, tmp_path: Path
) -> None:
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with (in_process_stack(nats_server.url, model.base_url, tool_settings=tools),
                Client(crewbus_mcp(nats_server.url, tmp_path), read_timeout_seconds=120) as mcp):
        listed = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(listed) == {"submit_task", "get_task", "cancel_task",
                               "list_pending_approvals", "resolve_approval", "search_memory"}
        assert listed["get_task"].annotations.read_only_hint is True
        assert listed["cancel_task"].annotations.destructive_hint is True
        done = structured(await mcp.call_tool(
            "submit_task", {"text": "Compare NATS and Kafka for edge devices"},
            progress_callback=on_progress))
        again = structured(await mcp.call_tool("get_task", {"task_id": done["task_id"]}))
        missing = await mcp.call_tool("get_task", {"task_id": "no-such-task"})
    assert done["status"] == "completed"
    assert "[simulated]" in done["answer"] and done["simulated_model"] is True
    assert again["answer"] == done["answer"]
    assert done["trace_id"] == again["trace_id"] == task_trace_id(done["task_id"])
    assert any(line.startswith("submitted") for line in progress)
    assert any("completed" in line for line in progress), progress
    assert missing.is_error and "no task no-such-task" in missing.content[0].text


async def test_an_mcp_client_approves_a_paused_tool_call_and_the_task_completes(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings, tmp_path: Path
) -> None:
    model.script("executor",
                 SimReply(tool_calls=[("write_file", json.dumps({"path": "x.txt",
                                                                 "content": "hi"}))]),
                 SimReply(content="Wrote x.txt."))
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    result: dict[str, Any] = {}
    async with (in_process_stack(nats_server.url, model.base_url, tool_settings=tools),
                Client(crewbus_mcp(nats_server.url, tmp_path), read_timeout_seconds=120) as mcp,
                anyio.create_task_group() as tg):

        async def submit() -> None:
            result.update(structured(await mcp.call_tool(
                "submit_task", {"text": "Write hi to x.txt"}, progress_callback=on_progress)))

        tg.start_soon(submit)
        with anyio.fail_after(60):
            while True:
                pending = structured(await mcp.call_tool("list_pending_approvals", {}))
                if pending["pending"]:
                    break
                await anyio.sleep(0.2)
        (call,) = pending["pending"]
        assert call["tool"] == "write_file" and '"hi"' in call["arguments"]
        decided = structured(await mcp.call_tool("resolve_approval", {
            "task_id": call["task_id"], "approved": True, "call_key": call["call_key"]}))
        assert decided["task_id"] == call["task_id"]
    assert result["status"] == "completed", result
    written = tools.workspace_root_path() / result["task_id"] / "x.txt"
    assert written.read_text() == "hi"
    assert any("approval" in line for line in progress), progress


async def test_an_mcp_client_over_http_cancels_a_task_it_submitted_without_waiting(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings, tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    model.script("planner", SimReply(content="{}", delay_s=30))  # the task stays unfinished
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "crewbus", "mcp", "serve", "--http", str(port),
         "--nats", nats_server.url],
        stdout=(tmp_path / "mcp-http.log").open("wb"), stderr=subprocess.STDOUT,
        env={**_env(tmp_path)})
    processes.append(server)
    nc = await nats.connect(nats_server.url)
    memory = await MemoryService(nc, MemorySettings(data_dir=str(tmp_path / "mem"))).start()
    await MemoryClient(nc).remember("Kestrel Observatory opens at dusk.", "document",
                                    source="kestrel.md")
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools):
        await wait_for_http(port, server)
        async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=60) as mcp:
            queued = structured(await mcp.call_tool(
                "submit_task", {"text": "A long task", "wait": False}))
            cancelled = structured(await mcp.call_tool(
                "cancel_task", {"task_id": queued["task_id"], "reason": "not needed"}))
            state = structured(await mcp.call_tool("get_task", {"task_id": queued["task_id"]}))
            hits = structured(await mcp.call_tool(
                "search_memory", {"query": "When does the observatory open?", "k": 1}))
    await memory.stop()
    await nc.close()
    assert cancelled["status"] == "cancelled"
    assert state["status"] == "cancelled" and "not needed" in state["error"]["message"]
    (hit,) = hits["hits"]
    assert hit["source"] == "kestrel.md" and "dusk" in hit["text"]
    assert server.poll() is None


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "CREWBUS_DATA_DIR": str(tmp_path / "mcp-data"),
            "CREWBUS_METRICS_PORT": "0"}
