"""MCP tools in tasks on the bus: the executor starts the servers, the simulated model
calls a tool its step directs, the answer and the trace carry the tool's real result;
approval for a destructive tool of a real server."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.tracing import read_trace
from crewbus_agents.tools import ToolSettings
from crewbus_contracts import (
    ApprovalRequested,
    ResolveApproval,
    SubmitTask,
    TaskCompleted,
)
from crewbus_contracts.traces import Span
from tests.mcp_helpers import git_server, make_git_repo, staged, time_server, write_servers
from tests.stack import final_event, in_process_stack

pytestmark = pytest.mark.anyio


@pytest.fixture
def tools(tmp_path: Path) -> ToolSettings:
    return ToolSettings(workspace_root=str(tmp_path / "workspaces"), requires_approval=frozenset())


def one_executor_step(instruction: str) -> SimReply:
    """A plan of one executor step, so the directive is followed exactly once."""
    plan = {"steps": [{"id": "e1", "role": "executor", "instruction": instruction}],
            "rationale": "one tool call"}
    return SimReply(content=json.dumps(plan))


async def spans_of(client: CrewbusClient, task_id: str, kind: str) -> list[Span]:
    with anyio.fail_after(60):
        while True:
            spans = [s for s in await read_trace(client.js, task_id) if s.kind == kind]
            if spans:
                return spans
            await anyio.sleep(0.1)


async def test_a_step_directing_a_time_server_call_answers_with_the_servers_real_result(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = write_servers(tmp_path / "mcp.json", {"time": time_server()})
    monkeypatch.setenv("CREWBUS_MCP_SERVERS", str(servers))
    directive = 'use tool time__get_current_time with {"timezone": "Asia/Tokyo"}'
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(SubmitTask(text=f"What time is it in Tokyo? {directive}"))
        event = await final_event(client, accepted.task_id, timeout_s=60)
        assert isinstance(event, TaskCompleted), event
        (span, *_) = await spans_of(client, accepted.task_id, "tool")
    answer = event.result.answer
    assert "Tool time__get_current_time returned:" in answer
    assert '"timezone": "Asia/Tokyo"' in answer and "+09:00" in answer  # the server's own
    assert span.name == "execute_tool time__get_current_time"
    assert span.attributes["crewbus.tool.server"] == "time"
    assert span.status == "ok"
    assert span.output["structured"]["timezone"] == "Asia/Tokyo"
    assert "+09:00" in span.output["structured"]["datetime"]


async def test_a_destructive_git_tool_waits_for_approval_and_runs_once_approved(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_git_repo(tmp_path / "repo")
    servers = write_servers(tmp_path / "mcp.json", {"git": git_server(repo)})
    monkeypatch.setenv("CREWBUS_MCP_SERVERS", str(servers))
    directive = f'use tool git__git_reset with {json.dumps({"repo_path": str(repo)})}'
    model.script("planner", one_executor_step(f"Unstage everything. {directive}"))
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(SubmitTask(text="Unstage the changes"))
        with anyio.fail_after(60):
            async for asked in client.events(accepted.task_id, until_final=False):
                if isinstance(asked, ApprovalRequested):
                    break
        assert asked.tool == "git__git_reset"
        assert staged(repo) == "a.txt"  # nothing ran before the approval
        await client.control(ResolveApproval(task_id=accepted.task_id, approved=True,
                                             by="reviewer", call_key=asked.call_key))
        event = await final_event(client, accepted.task_id, timeout_s=60)
    assert isinstance(event, TaskCompleted), event
    assert staged(repo) == ""
    assert "Tool git__git_reset returned:" in event.result.answer
