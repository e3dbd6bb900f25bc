"""The executor's tools on the bus: the tool loop, approvals (granted, denied, expired,
surviving an orchestrator restart), cancel mid-step, budgets."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus_agents.tools import ToolSettings
from crewbus_contracts import (
    ApprovalRequested,
    CancelTask,
    ResolveApproval,
    StepStarted,
    SubmitTask,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskLimits,
)
from tests.stack import final_event, in_process_stack, wait_for_state

pytestmark = pytest.mark.anyio




@pytest.fixture
def tools(tmp_path: Path) -> ToolSettings:
    return ToolSettings(workspace_root=str(tmp_path / "workspaces"))


def call(name: str, **arguments: object) -> SimReply:
    return SimReply(tool_calls=[(name, json.dumps(arguments))])


def executor_requests(model: SimulatedModel) -> list[dict]:  # type: ignore[type-arg]
    return [body for agent, body in model.requests if agent == "executor"]


async def first(client: CrewbusClient, task_id: str, kind: type, timeout_s: float = 60):  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout_s):
        async for event in client.events(task_id, until_final=False):
            if isinstance(event, kind):
                return event
    raise AssertionError


async def test_the_executor_loops_model_tool_model_until_it_answers(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings
) -> None:
    model.script("executor", call("calculator", expression="6 * 7"),
                 SimReply(content="The product is 42."))
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(SubmitTask(text="What is six times seven?"))
        event = await final_event(client, accepted.task_id)
        state = await client.state(accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    assert state is not None and state.rounds[0].steps["e1"].output == "The product is 42."
    second_turn = executor_requests(model)[1]["messages"]
    tool_answers = [m["content"] for m in second_turn if m["role"] == "tool"]
    assert tool_answers and "42" in tool_answers[0]
    assert any(t["function"]["name"] == "calculator" for t in executor_requests(model)[0]["tools"])


async def test_an_approved_write_runs_after_the_task_waited_in_awaiting_approval(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings
) -> None:
    model.script("executor", call("write_file", path="out.txt", content="hello"),
                 SimReply(content="Wrote out.txt."))
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(SubmitTask(text="Write hello to a file"))
        asked = await first(client, accepted.task_id, ApprovalRequested)
        assert asked.tool == "write_file" and '"hello"' in asked.arguments
        await wait_for_state(client, accepted.task_id, ("awaiting_approval",), 60)
        workspace = Path(tools.workspace_root) / accepted.task_id
        assert not (workspace / "out.txt").exists()
        reply = await client.control(ResolveApproval(task_id=accepted.task_id, approved=True,
                                                     by="alice"))
        assert reply.status == "running"
        event = await final_event(client, accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    assert (workspace / "out.txt").read_text() == "hello"


async def test_a_denial_reaches_the_model_as_the_tools_answer(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings
) -> None:
    model.script("executor", call("write_file", path="out.txt", content="x"),
                 SimReply(content="I could not write the file."))
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(SubmitTask(text="Write x to a file"))
        await first(client, accepted.task_id, ApprovalRequested)
        await wait_for_state(client, accepted.task_id, ("awaiting_approval",), 60)
        await client.control(ResolveApproval(task_id=accepted.task_id, approved=False, by="bob",
                                             reason="not in production"))
        event = await final_event(client, accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    assert not (Path(tools.workspace_root) / accepted.task_id / "out.txt").exists()
    resumed = executor_requests(model)[1]["messages"]
    denial = next(m["content"] for m in resumed if m["role"] == "tool")
    assert "denied by bob: not in production" in denial


async def test_an_approval_nobody_gives_expires_as_a_denial(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings
) -> None:
    model.script("executor", call("write_file", path="out.txt", content="x"),
                 SimReply(content="Gave up on the file."))
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools,
                                sweep_interval_s=0.2) as client:
        limits = TaskLimits(approval_timeout_seconds=1.0)
        accepted = await client.submit(SubmitTask(text="Write x", limits=limits))
        event = await final_event(client, accepted.task_id)
        state = await client.state(accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    assert state is not None
    (approval,) = state.approvals.values()
    assert approval.decision is not None and not approval.decision.approved
    assert "expired" in approval.decision.reason
    assert not (Path(tools.workspace_root) / accepted.task_id / "out.txt").exists()


async def test_a_pending_approval_survives_a_restart_of_every_service(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings
) -> None:
    model.script("executor", call("write_file", path="out.txt", content="kept"),
                 SimReply(content="Done."))
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(SubmitTask(text="Write kept"))
        await first(client, accepted.task_id, ApprovalRequested)
    # Every service stopped (maybe between the event and the saved state: then the pause
    # is redelivered); a new orchestrator and agents pick the task up from the bus.
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        await wait_for_state(client, accepted.task_id, ("awaiting_approval",), 60)
        await client.control(ResolveApproval(task_id=accepted.task_id, approved=True, by="carol"))
        event = await final_event(client, accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    assert (Path(tools.workspace_root) / accepted.task_id / "out.txt").read_text() == "kept"


async def test_cancel_mid_step_stops_the_step_at_its_next_model_or_tool_call(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings
) -> None:
    slow_call = SimReply(tool_calls=[("calculator", '{"expression": "1+1"}')], delay_s=1.5)
    model.script("executor", slow_call, SimReply(content="never asked"))
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(SubmitTask(text="Add one and one"))
        started = await first(client, accepted.task_id, StepStarted)
        while started.role != "executor":
            started = await _next_start(client, accepted.task_id, started)
        reply = await client.control(CancelTask(task_id=accepted.task_id, by="dave",
                                                reason="wrong task"))
        assert reply.status == "cancelled"
        event = await final_event(client, accepted.task_id)
        await anyio.sleep(2.5)  # the slow model call returns; the loop must stop there
        state = await client.state(accepted.task_id)
    assert isinstance(event, TaskCancelled) and event.by == "dave"
    assert state is not None and state.status == "cancelled"
    assert state.error is not None and "dave" in state.error.message
    assert len(executor_requests(model)) == 1
    assert state.rounds[0].steps["e2"].status == "pending"


async def _next_start(client: CrewbusClient, task_id: str, after: StepStarted) -> StepStarted:
    seen = False
    with anyio.fail_after(60):
        async for event in client.events(task_id, until_final=False):
            if event == after:
                seen = True
            elif seen and isinstance(event, StepStarted):
                return event
    raise AssertionError


async def test_crossing_the_token_budget_ends_the_task_with_the_spend(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings
) -> None:
    async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
        accepted = await client.submit(
            SubmitTask(text="Anything at all", limits=TaskLimits(max_tokens=400)))
        event = await final_event(client, accepted.task_id)
        state = await client.state(accepted.task_id)
    assert isinstance(event, TaskFailed), event
    assert event.error.code == "budget_exceeded"
    assert state is not None and state.spent_tokens > 400
    assert f"{state.spent_tokens} tokens" in event.error.message


async def test_crossing_the_usd_budget_ends_the_task_with_the_spend(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crewbus.telemetry import pricing

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"crewbus-simulated": {
        "input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5}}))
    monkeypatch.setenv("CREWBUS_PRICES_FILE", str(prices))
    pricing.active_prices.cache_clear()
    try:
        async with in_process_stack(nats_server.url, model.base_url, tool_settings=tools) as client:
            accepted = await client.submit(
                SubmitTask(text="Spend a little", limits=TaskLimits(max_cost_usd=0.005)))
            event = await final_event(client, accepted.task_id)
            state = await client.state(accepted.task_id)
    finally:
        monkeypatch.delenv("CREWBUS_PRICES_FILE")
        pricing.active_prices.cache_clear()
    assert isinstance(event, TaskFailed), event
    assert event.error.code == "budget_exceeded"
    assert state is not None and state.spent_usd > 0.005
    assert f"${state.spent_usd:.6f}" in event.error.message
