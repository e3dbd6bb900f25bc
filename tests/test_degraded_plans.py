"""A bad plan degrades the task instead of failing it: what is unambiguous is repaired, a
plan that stays invalid is replaced by one executor step, and both show in the result,
the events, the state, the trace, the metrics and the CLI. With `allow_degraded` off a
bad plan fails the task with `plan_failed`, as before.

Real nats-server, the real services in this event loop, the simulated model scripted
with the invalid plans a small open model was seen to write."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from crewbus import render
from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.tracing import read_trace
from crewbus_contracts import (
    SubmitTask,
    TaskCompleted,
    TaskFailed,
    TaskLimits,
    TaskPlanned,
    TaskState,
)
from crewbus_contracts.traces import Span
from tests.stack import final_event, in_process_stack, wait_for_state

pytestmark = pytest.mark.anyio


def _step(step_id: str, *after: str, role: str = "researcher") -> dict[str, Any]:
    return {"id": step_id, "role": role, "instruction": f"do step {step_id}",
            "depends_on": list(after)}


def _plan(*steps: dict[str, Any]) -> SimReply:
    return SimReply(content=json.dumps({"steps": list(steps), "rationale": "small model"}))


def degraded(reason: str) -> float:
    return REGISTRY.get_sample_value("crewbus_degraded_total", {"reason": reason}) or 0.0


def validation_retries() -> float:
    labels = {"agent": "planner", "model": "crewbus-simulated"}
    return REGISTRY.get_sample_value("crewbus_llm_validation_retries_total", labels) or 0.0


async def _run(client: CrewbusClient, text: str, limits: TaskLimits | None = None,
               ) -> tuple[Any, TaskState, list[Any]]:
    accepted = await client.submit(SubmitTask(text=text, limits=limits or TaskLimits()))
    event = await final_event(client, accepted.task_id)
    events = [e async for e in client.events(accepted.task_id)]
    state = await wait_for_state(client, accepted.task_id, ("completed", "failed"))
    return event, state, events


async def _spans(client: CrewbusClient, task_id: str, name: str) -> list[Span]:
    """Spans are written fire-and-forget: read until the one named has arrived."""
    with anyio.fail_after(60):
        while True:
            spans = await read_trace(client.js, task_id)
            if any(s.name == name for s in spans):
                return spans
            await anyio.sleep(0.1)


EXECUTOR_LAST = {"role": "executor"}

REPAIRABLE = [
    pytest.param(
        [_step("1"), _step("1"), _step("2", "1", **EXECUTOR_LAST)],
        [("1", []), ("1-2", []), ("2", ["1", "1-2"])],
        "repeated the id '1': renamed it '1-2'",
        id="duplicate-ids",
    ),
    pytest.param(
        [_step("1"), _step("2", "a", "b", **EXECUTOR_LAST)],
        [("1", []), ("2", [])],
        "step '2' depended on unknown steps ['a', 'b']: dropped",
        id="depends-on-unknown-ids",
    ),
    pytest.param(
        [_step("1"), _step("2", "1", "2", **EXECUTOR_LAST)],
        [("1", []), ("2", ["1"])],
        "step '2' depended on itself: dropped",
        id="depends-on-itself",
    ),
    pytest.param(
        [_step("a", "c"), _step("b", "a"), _step("c", "b", **EXECUTOR_LAST)],
        [("a", []), ("b", ["a"]), ("c", ["b"])],
        "step 'a' depended on 'c', closing the cycle a -> c -> b -> a: dropped",
        id="cycle",
    ),
]


@pytest.mark.parametrize(("steps", "shape", "repair"), REPAIRABLE)
async def test_an_invalid_plan_is_repaired_and_the_task_completes(
    nats_server: NatsServer, model: SimulatedModel,
    steps: list[dict[str, Any]], shape: list[tuple[str, list[str]]], repair: str,
) -> None:
    model.script("planner", _plan(*steps))
    before, retries = degraded("plan_repaired"), validation_retries()
    async with in_process_stack(nats_server.url, model.base_url) as client:
        event, state, events = await _run(client, "Compare two brokers")
        spans = await _spans(client, state.task_id, f"task {state.task_id}")

    assert isinstance(event, TaskCompleted), event
    assert event.result.degraded == "plan_repaired"
    assert state.result is not None and state.result.degraded == "plan_repaired"
    round_ = state.rounds[0]
    assert round_.plan is not None
    assert [(s.id, s.depends_on) for s in round_.plan.steps] == shape
    assert round_.planner.status == "done"
    assert round_.planner.degraded == "plan_repaired"
    assert any(repair in r for r in round_.planner.repairs), round_.planner.repairs
    assert all(s.status == "done" for s in round_.steps.values())
    assert round_.critique is not None
    # Repaired in place: no second model turn for the plan.
    assert [a for a, _ in model.requests].count("planner") == 1
    assert validation_retries() == retries
    assert degraded("plan_repaired") == before + 1
    (planned,) = [e for e in events if isinstance(e, TaskPlanned)]
    assert planned.degraded == "plan_repaired" and planned.repairs == round_.planner.repairs

    (agent,) = [s for s in spans if s.name == "invoke_agent planner"]
    assert agent.attributes["crewbus.degraded"] == "plan_repaired"
    assert repair in str(agent.attributes["crewbus.repairs"])
    assert agent.attributes["crewbus.repair_count"] == len(round_.planner.repairs)
    (round_span,) = [s for s in spans if s.kind == "round"]
    assert round_span.attributes["crewbus.degraded"] == "plan_repaired"


async def test_a_plan_that_stays_invalid_falls_back_to_one_executor_step(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    model.script("planner", _plan(),  # no steps, then an unknown role: not repairable
                 _plan(_step("a", role="writer")))
    before = degraded("single_step")
    async with in_process_stack(nats_server.url, model.base_url) as client:
        event, state, events = await _run(client, "Name three uses of a work queue")

    assert isinstance(event, TaskCompleted), event
    assert event.result.degraded == "single_step"
    round_ = state.rounds[0]
    assert round_.planner.status == "failed"
    assert round_.planner.degraded == "single_step"
    assert round_.planner.error is not None and "writer" in round_.planner.error
    assert round_.plan is not None
    (step,) = round_.plan.steps
    assert (step.id, step.role, step.depends_on) == ("answer", "executor", [])
    assert round_.steps["answer"].status == "done"
    assert round_.answer == round_.steps["answer"].output
    assert round_.critique is not None and event.result.score == round_.critique.score
    assert [a for a, _ in model.requests].count("planner") == 2  # the validation retry ran
    executor_prompt = json.dumps(next(b for a, b in model.requests if a == "executor"))
    assert "Name three uses of a work queue" in executor_prompt
    assert degraded("single_step") == before + 1
    (planned,) = [e for e in events if isinstance(e, TaskPlanned)]
    assert planned.degraded == "single_step"
    assert "Degraded: single_step" in render.result_block(state.task_id, event.result)
    assert "degraded: single_step" in render.state_block(state)


async def test_the_best_round_decides_whether_the_result_is_degraded(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    low = {"score": 0.3, "verdict": "revise", "reasons": ["too thin"], "suggestions": []}
    model.script("planner", _plan(), _plan())  # round 1 falls back; round 2 plans normally
    model.script("critic", SimReply(content=json.dumps(low)))
    async with in_process_stack(nats_server.url, model.base_url) as client:
        event, state, _ = await _run(client, "Pick a message broker")

    assert isinstance(event, TaskCompleted), event
    assert [r.planner.degraded for r in state.rounds] == ["single_step", None]
    assert event.result.rounds == 2 and event.result.degraded is None


async def test_with_degrading_off_a_repairable_plan_fails_the_task_as_before(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    duplicate = _plan(_step("1"), _step("1", role="executor"))
    model.script("planner", duplicate, duplicate)
    before = degraded("plan_repaired") + degraded("single_step")
    async with in_process_stack(nats_server.url, model.base_url) as client:
        event, state, _ = await _run(client, "Anything", TaskLimits(allow_degraded=False))

    assert isinstance(event, TaskFailed), event
    assert event.error.code == "plan_failed"
    assert "step ids must be unique" in event.error.message
    assert [a for a, _ in model.requests].count("planner") == 2  # retried, not repaired
    assert state.rounds[0].planner.degraded is None and state.rounds[0].planner.repairs == []
    assert degraded("plan_repaired") + degraded("single_step") == before


async def test_the_cli_shows_degrading_and_no_degrade_turns_it_off(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    model.script("planner", *([_plan()] * 4))  # every plan invalid: two tasks, two turns each
    async with in_process_stack(nats_server.url, model.base_url) as client:
        ok = await _cli("submit", "Summarise JetStream", "--wait", "--nats", nats_server.url)
        off = await _cli("submit", "Summarise NATS", "--wait", "--no-degrade",
                         "--nats", nats_server.url)
        task_id = ok.stderr.decode().split()[1]
        status = await _cli("status", task_id, "--nats", nats_server.url)
        assert await client.state(task_id) is not None

    assert ok.returncode == 0, ok.stderr
    assert "Degraded: single_step" in ok.stdout.decode()
    assert off.returncode == 1
    assert "failed [plan_failed]" in off.stdout.decode()
    assert "degraded: single_step" in status.stdout.decode()


async def _cli(*args: str) -> Any:
    with anyio.fail_after(60):
        return await anyio.run_process([sys.executable, "-m", "crewbus", *args], check=False)
