"""A task's trace is complete: every model call, tool call, memory query and approval
appears under its parent; secrets never reach traces or events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import nats
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.memory.client import MemoryClient
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings
from crewbus.tracing import build_tree, read_trace, render_tree
from crewbus_agents.tools import ToolSettings
from crewbus_contracts import ApprovalRequested, ResolveApproval, SubmitTask, TaskCompleted
from tests.stack import final_event, in_process_stack, wait_for_state

pytestmark = pytest.mark.anyio

SECRET = "sk-live-0123456789abcdefghijklmnop"



@pytest.fixture
async def memory(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[MemoryClient]:
    nc = await nats.connect(nats_server.url)
    service = await MemoryService(nc, MemorySettings(data_dir=str(tmp_path / "mem"))).start()
    client = MemoryClient(nc)
    await client.remember("Glider frames are 4096 bytes at most.", "document", source="spec.md")
    yield client
    await service.stop()
    await nc.close()


async def test_every_call_of_a_task_appears_in_its_trace_under_its_parent(
    nats_server: NatsServer, memory: MemoryClient, tmp_path: Path
) -> None:
    sim = SimulatedModel()
    sim.script("executor",
               SimReply(tool_calls=[("calculator", json.dumps({"expression": "4096 / 8"}))]),
               SimReply(tool_calls=[("write_file", json.dumps({"path": "a.txt",
                                                               "content": "512"}))]),
               SimReply(content="512 words per frame."))
    url = await sim.start()
    tools = ToolSettings(workspace_root=str(tmp_path / "ws"))
    try:
        async with in_process_stack(nats_server.url, url, tool_settings=tools) as client:
            accepted = await client.submit(SubmitTask(
                text=f"How many 8-byte words fit in a glider frame? (key {SECRET})"))
            with anyio.fail_after(60):
                async for event in client.events(accepted.task_id, until_final=False):
                    if isinstance(event, ApprovalRequested):
                        break
            await wait_for_state(client, accepted.task_id, ("awaiting_approval",), 60)
            await client.control(ResolveApproval(task_id=accepted.task_id, approved=True,
                                                 by="erin"))
            done = await final_event(client, accepted.task_id)
            assert isinstance(done, TaskCompleted), done
            events = [e async for e in client.events(accepted.task_id)]
            # The task span is written right after the final event: wait until it is stored.
            with anyio.fail_after(60):
                spans = await read_trace(client.js, accepted.task_id)
                while not any(s.kind == "task" for s in spans):
                    await anyio.sleep(0.05)
                    spans = await read_trace(client.js, accepted.task_id)
    finally:
        await sim.stop()

    by_id = {s.span_id: s for s in spans}
    (task,) = [s for s in spans if s.kind == "task"]
    assert task.parent_span_id is None
    rounds = [s for s in spans if s.kind == "round"]
    assert rounds and all(r.parent_span_id == task.span_id for r in rounds)
    agents = [s for s in spans if s.kind == "agent"]
    assert {s.name for s in agents} >= {"invoke_agent planner", "invoke_agent researcher",
                                        "invoke_agent executor", "invoke_agent critic"}
    assert all(by_id[a.parent_span_id].kind == "round" for a in agents if a.parent_span_id)
    assert all(a.parent_span_id in by_id for a in agents)
    assert len({s.trace_id for s in spans}) == 1

    chats = [s for s in spans if s.kind == "chat"]
    assert len(chats) == len(sim.requests)  # every model call, each under an agent span
    assert all(by_id[c.parent_span_id].kind == "agent" for c in chats if c.parent_span_id)
    assert all(c.name == "chat crewbus-simulated" for c in chats)
    assert all("gen_ai.usage.input_tokens" in c.attributes for c in chats if c.status == "ok")

    # The resumed step replays the calculator from its record: visible, and marked so.
    fresh = sorted(s.name for s in spans
                   if s.kind == "tool" and not s.attributes["crewbus.tool.replayed"])
    replayed = [s.name for s in spans if s.kind == "tool" and s.attributes["crewbus.tool.replayed"]]
    assert fresh == ["execute_tool calculator", "execute_tool write_file"]
    assert replayed == ["execute_tool calculator"]
    calc = next(s for s in spans if s.name == "execute_tool calculator")
    assert "512" in json.dumps(calc.output)

    memory_queries = [s for s in spans if s.kind == "memory"]
    assert memory_queries and all(by_id[m.parent_span_id].kind == "agent"
                                  for m in memory_queries if m.parent_span_id)
    assert any("4096" in json.dumps(m.output) for m in memory_queries)

    (approval,) = [s for s in spans if s.kind == "approval"]
    assert approval.attributes["crewbus.approval.by"] == "erin"

    assert SECRET.encode() not in b"".join(msgspec.json.encode(s) for s in spans)
    assert SECRET not in render_tree(build_tree(spans))
    assert SECRET.encode() not in b"".join(msgspec.json.encode(e) for e in events)
    assert "How many 8-byte words" in task.input
