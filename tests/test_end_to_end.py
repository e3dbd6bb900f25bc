"""A task runs end to end through all four agents on a real nats-server."""

from __future__ import annotations

import json

import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus_contracts import SubmitTask, TaskCompleted, TaskFailed, TaskLimits
from tests.stack import final_event, in_process_stack

pytestmark = pytest.mark.anyio




async def test_a_task_goes_through_all_four_agents_and_completes(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with in_process_stack(nats_server.url, model.base_url) as client:
        accepted = await client.submit(SubmitTask(text="Compare NATS and Kafka for small teams"))
        event = await final_event(client, accepted.task_id)
        assert isinstance(event, TaskCompleted), event
        state = await client.state(accepted.task_id)
    assert state is not None and state.status == "completed"
    agents = {agent for agent, _ in model.requests}
    assert agents == {"planner", "researcher", "executor", "critic"}
    round_ = state.rounds[0]
    assert round_.plan is not None and len(round_.plan.steps) == 4
    assert all(s.status == "done" and s.usage.calls >= 1 for s in round_.steps.values())
    assert all(s.prompt_version for s in round_.steps.values())
    assert event.result.simulated_model is True
    assert event.result.rounds == 1
    assert event.result.answer == round_.answer


async def test_a_low_first_critique_replans_and_the_second_round_is_in_the_state(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    low = {"score": 0.2, "verdict": "revise", "reasons": ["misses the cost angle"],
           "suggestions": ["compare operating costs"]}
    model.script("critic", SimReply(content=json.dumps(low)))
    async with in_process_stack(nats_server.url, model.base_url) as client:
        accepted = await client.submit(SubmitTask(text="Pick a message broker"))
        event = await final_event(client, accepted.task_id)
        state = await client.state(accepted.task_id)
    assert isinstance(event, TaskCompleted), event
    assert state is not None and len(state.rounds) == 2
    assert state.rounds[0].critique is not None and state.rounds[0].critique.score == 0.2
    assert state.rounds[1].critique is not None and state.rounds[1].critique.score >= 0.7
    assert event.result.rounds == 2
    replan_prompts = [b for a, b in model.requests if a == "planner"]
    assert "misses the cost angle" in json.dumps(replan_prompts[-1])


async def test_a_reply_that_fails_validation_twice_fails_the_step_with_the_error(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    model.script("planner", SimReply(content='{"steps": []}'), SimReply(content='{"steps": 3}'))
    async with in_process_stack(nats_server.url, model.base_url) as client:
        # Degrading off: otherwise one executor step would answer instead (see
        # test_degraded_plans.py).
        limits = TaskLimits(allow_degraded=False)
        accepted = await client.submit(SubmitTask(text="Anything", limits=limits))
        event = await final_event(client, accepted.task_id)
    assert isinstance(event, TaskFailed), event
    assert event.error.code == "plan_failed"
    assert "Expected `array`, got `int`" in event.error.message


async def test_a_task_past_its_deadline_fails_with_deadline_exceeded(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    model.script("researcher", SimReply(content=None, delay_s=5.0))
    async with in_process_stack(nats_server.url, model.base_url) as client:
        task = SubmitTask(text="Slow one", limits=TaskLimits(deadline_seconds=1.5))
        accepted = await client.submit(task)
        event = await final_event(client, accepted.task_id)
    assert isinstance(event, TaskFailed)
    assert event.error.code == "deadline_exceeded"
