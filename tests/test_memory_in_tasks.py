"""Memory in real tasks: the researcher cites ingested chunks; the planner sees how a
similar past task went, critique included; finished tasks are remembered."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.memory.client import MemoryClient
from crewbus.memory.ingest import ingest
from crewbus_contracts import SubmitTask, TaskCompleted, TaskLimits
from tests.stack import final_event, in_process_stack

pytestmark = pytest.mark.anyio

DOC = """# The Zephyr relay

The Zephyr relay forwards telemetry frames from orbiting gliders to the ground.

## Frame budget

Each Zephyr frame carries at most 4096 bytes and is acknowledged within 80 milliseconds.
"""



async def test_a_task_about_an_ingested_document_cites_its_chunks(
    nats_server: NatsServer, model: SimulatedModel, memory: MemoryClient, tmp_path: Path
) -> None:
    doc = tmp_path / "zephyr.md"
    doc.write_text(DOC)
    stored = await ingest(memory, [doc])
    chunk_ids = set(stored[str(doc.resolve())])
    assert chunk_ids
    async with in_process_stack(nats_server.url, model.base_url) as client:
        accepted = await client.submit(
            SubmitTask(text="How many bytes can a Zephyr relay frame carry?"))
        event = await final_event(client, accepted.task_id)
        state = await client.state(accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    assert state is not None
    research = [s for s in state.rounds[0].steps.values() if s.role == "researcher"]
    cited = {source for step in research for source in step.sources}
    assert cited and cited <= chunk_ids
    prompts = [json.dumps(b) for a, b in model.requests if a == "researcher"]
    assert any("4096 bytes" in p for p in prompts)
    findings = await memory.search("Zephyr frame bytes", k=5, kind="finding")
    assert any(f.task_id == accepted.task_id for f in findings)


async def test_a_task_like_a_failed_past_one_is_planned_with_its_critique_in_view(
    nats_server: NatsServer, model: SimulatedModel, memory: MemoryClient
) -> None:
    harsh = {"score": 0.1, "verdict": "reject",
             "reasons": ["ignored the 5-7-5 syllable pattern"],
             "suggestions": ["count syllables per line"]}
    model.script("critic", SimReply(content=json.dumps(harsh)))
    async with in_process_stack(nats_server.url, model.base_url) as client:
        first = await client.submit(SubmitTask(text="Write a haiku about JetStream consumers",
                                               limits=TaskLimits(max_rounds=1)))
        done = await final_event(client, first.task_id)
        assert isinstance(done, TaskCompleted) and not done.result.accepted
        with anyio.fail_after(60):  # the task and its critique are written after the final event
            while not {first.task_id} <= {
                c.task_id for c in await memory.search("haiku JetStream", k=5, kind="critique")
            }:
                await anyio.sleep(0.1)
        second = await client.submit(SubmitTask(text="Write a haiku about JetStream streams"))
        await final_event(client, second.task_id)
        remembered: set[str | None] = set()
        with anyio.fail_after(60):  # written right after the final event
            while not remembered >= {first.task_id, second.task_id}:
                await anyio.sleep(0.1)
                tasks = await memory.search("haiku JetStream", k=5, kind="task")
                remembered = {t.task_id for t in tasks}
    planner_prompts = [b["messages"][-1]["content"] for a, b in model.requests if a == "planner"]
    assert "5-7-5 syllable pattern" not in planner_prompts[0]
    assert "5-7-5 syllable pattern" in planner_prompts[-1]
    assert "Similar past tasks" in planner_prompts[-1]


async def test_the_executor_can_search_memory_as_a_tool(
    nats_server: NatsServer, model: SimulatedModel, model_url: str, memory: MemoryClient
) -> None:
    await memory.remember("Zephyr frames are acknowledged within 80 milliseconds.", "document",
                          source="zephyr.md")
    model.script("executor",
                 SimReply(tool_calls=[("memory_search", json.dumps({"query": "Zephyr ack"}))]),
                 SimReply(content="Within 80 ms."))
    async with in_process_stack(nats_server.url, model_url) as client:
        accepted = await client.submit(SubmitTask(text="How fast are Zephyr frames acked?"))
        event = await final_event(client, accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    second_turn = [b for a, b in model.requests if a == "executor"][1]["messages"]
    tool_answer = next(m["content"] for m in second_turn if m["role"] == "tool")
    assert "80 milliseconds" in tool_answer and "zephyr.md" in tool_answer
