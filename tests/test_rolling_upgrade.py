"""A rolling upgrade on one real nats-server: services of two contract versions run tasks
together, and the tasks complete.

How "the other version" is made: a service runs on a `VersionedConnection`, which rewrites
every crewbus message the service publishes (work, results, task state in KV, events,
replies, spans, tool records) just before it leaves the process. "Newer" adds a field the
current contracts don't declare to every object of the message, top level and nested, the
way a release that adds optional fields writes. "Older" removes the fields the contracts
gained since the bus was first released, the way a first-release service writes.

Why this is a rolling upgrade: an upgrade that keeps `schema_version` changes only which
optional fields a service writes, and that is exactly what the rewrite changes. The
services' own code is the current code, so whoever reads a newer message reads it with
contracts that do not know the added fields (an old service), and whoever reads an older
message reads it with contracts that expect fields it lacks (a new service). One side of
the bus (the orchestrator, with the gateway, or the four agents) is the other version, so
every hop between them crosses versions in the direction under test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from crewbus.bus.topology import ensure_topology
from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.gateway import start_gateway
from crewbus.llm.adapter import LLMClient
from crewbus.llm.settings import SIMULATED_MODEL_NAME, LLMSettings
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.orchestrator.service import Orchestrator
from crewbus.orchestrator.settings import OrchestratorSettings
from crewbus.tracing import read_trace, start_tracer
from crewbus_agents.roles import AGENTS
from crewbus_agents.runtime import build_agent_runtime
from crewbus_agents.settings import AgentSettings
from crewbus_agents.tools import ToolSettings
from crewbus_contracts import (
    AGENT_ROLES,
    ApprovalRequested,
    PlanRequest,
    ResolveApproval,
    StepResult,
    SubmitTask,
    TaskCompleted,
    TaskResult,
    TokenUsage,
    WorkReport,
    subjects,
)
from tests.stack import FAST, final_event, wait_for_state
from tests.versions import Rewrite, VersionedConnection, add_fields, drop_fields

pytestmark = pytest.mark.anyio

Side = str  # "orchestrator" or "agents": which side of the bus runs the other version


@asynccontextmanager
async def mixed_stack(
    nats_url: str, model_url: str, other: Side, rewrite: Rewrite, tools: ToolSettings
) -> AsyncIterator[tuple[CrewbusClient, VersionedConnection]]:
    """The orchestrator and one agent per role, with `other` on a connection that writes
    like the other version and the rest on a plain one."""
    plain = await nats.connect(nats_url)
    versioned = VersionedConnection(rewrite)
    await versioned.connect(nats_url)
    orch_nc: NATS = versioned if other == "orchestrator" else plain
    agents_nc: NATS = versioned if other == "agents" else plain
    orch_settings = OrchestratorSettings(nats_url=nats_url, **FAST)  # type: ignore[arg-type]
    agent_settings = AgentSettings(nats_url=nats_url, **FAST)  # type: ignore[arg-type]
    await ensure_topology(plain.jetstream(), orch_settings)
    llms: list[LLMClient] = []
    async with anyio.create_task_group() as tg:
        orch_tracer = await start_tracer(orch_nc.jetstream(), "orchestrator")
        orchestrator = await Orchestrator.create(orch_nc, orch_nc.jetstream(), orch_settings,
                                                 orch_tracer)
        await start_gateway(orch_nc, orch_nc.jetstream(), orch_settings.max_submit_bytes)
        await tg.start(orchestrator.run)
        agents_tracer = await start_tracer(agents_nc.jetstream(), "agents")
        for role in AGENT_ROLES:
            llm = LLMClient(LLMSettings(model=SIMULATED_MODEL_NAME, base_url=model_url), role)
            llms.append(llm)
            runtime = await build_agent_runtime(AGENTS[role], agents_nc.jetstream(), llm,
                                                agent_settings, tools, tracer=agents_tracer)
            tg.start_soon(runtime.run)
        try:
            yield CrewbusClient(plain), versioned
        finally:
            tg.cancel_scope.cancel()
    for llm in llms:
        await llm.aclose()
    await versioned.close()
    await plain.close()


@pytest.fixture
def tools(tmp_path: Path) -> ToolSettings:
    return ToolSettings(workspace_root=str(tmp_path / "workspaces"))


NEWER_WRITES = {
    "orchestrator": {
        "submit_task", "task_accepted", "plan_request", "step_request", "critique_request",
        "task_state", "task_submitted", "task_planned", "approval_requested",
        "approval_resolved", "step_finished", "task_critiqued", "task_completed",
        "control_accepted", "span", "span_batch",
    },
    "agents": {"plan_result", "step_result", "critique_result", "step_started", "span_batch",
               "ChatReply", "ToolOutcome"},
}
NESTED = {
    "orchestrator": {"task_state:$.rounds[0].plan.steps[0]", "step_request:$.step",
                     "task_completed:$.result.usage", "task_state:$.approvals['{call}']"},
    "agents": {"step_result:$.report.usage", "plan_result:$.plan.steps[0]",
               "critique_result:$.critique", "ChatReply:$.tool_calls[0]"},
}


@pytest.mark.parametrize("other", ["orchestrator", "agents"])
async def test_a_newer_side_adds_fields_everywhere_and_tasks_still_complete(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings, other: Side
) -> None:
    """A task that waits for a tool approval, so state, events, control, records and a
    resumed step all cross versions, with the control command from a newer CLI."""
    model.script("executor", SimReply(tool_calls=[
        ("write_file", json.dumps({"path": "out.txt", "content": "hello"}))]),
        SimReply(content="Wrote out.txt."))
    async with mixed_stack(nats_server.url, model.base_url or "", other, add_fields,
                           tools) as (client, versioned):
        accepted = await client.submit(SubmitTask(text="Write hello to a file"))
        async for event in client.events(accepted.task_id, until_final=False):
            if isinstance(event, ApprovalRequested):
                break
        await wait_for_state(client, accepted.task_id, ("awaiting_approval",), 60)
        command = msgspec.json.decode(msgspec.json.encode(
            ResolveApproval(task_id=accepted.task_id, approved=True, by="alice")))
        add_fields(command, ResolveApproval)
        reply = json.loads((await client.nc.request(
            subjects.CONTROL, json.dumps(command).encode(), timeout=30)).data)
        assert reply["type"] == "control_accepted", reply
        final = await final_event(client, accepted.task_id)
        state = await wait_for_state(client, accepted.task_id, ("completed",), 60)
        spans = await read_trace(client.js, accepted.task_id)
    assert isinstance(final, TaskCompleted), final
    assert final.result.answer
    assert (Path(tools.workspace_root) / accepted.task_id / "out.txt").read_text() == "hello"
    assert all(s.status == "done" for s in state.rounds[0].steps.values())
    assert {s.service for s in spans} == {"orchestrator", "agents"}
    assert NEWER_WRITES[other] <= set(versioned.rewritten), versioned.rewritten
    call = next(iter(state.approvals))
    assert {p.format(call=call) for p in NESTED[other]} <= versioned.paths


OLDER_WRITES = {
    "orchestrator": {"submit_task", "task_state", "step_request"},
    "agents": {"plan_result", "step_result", "critique_result"},
}


@pytest.mark.parametrize("other", ["orchestrator", "agents"])
async def test_an_older_side_omits_newer_fields_and_tasks_still_complete(
    nats_server: NatsServer, model_url: str, tools: ToolSettings, other: Side
) -> None:
    """The current code reads first-release messages: budgets, approvals, costs and the
    trace id are missing and take their defaults. No approval here: a first-release
    orchestrator had none to give."""
    async with mixed_stack(nats_server.url, model_url, other, drop_fields,
                           tools) as (client, versioned):
        accepted = await client.submit(SubmitTask(text="Compare NATS and Kafka"))
        final = await final_event(client, accepted.task_id)
        state = await wait_for_state(client, accepted.task_id, ("completed",), 60)
    assert isinstance(final, TaskCompleted), final
    assert final.result.answer and final.result.rounds == 1
    assert all(s.status == "done" for s in state.rounds[0].steps.values())
    assert OLDER_WRITES[other] <= set(versioned.rewritten), versioned.rewritten


def bad_input(reason: str, subject_kind: str) -> float:
    labels = {"reason": reason, "subject_kind": subject_kind}
    return REGISTRY.get_sample_value("crewbus_bad_input_total", labels) or 0.0


async def test_a_message_type_an_older_service_does_not_know_is_refused_and_counted(
    nats_server: NatsServer, model_url: str, tools: ToolSettings
) -> None:
    """The test writes as newer services would: work of a new type for the planner and a
    result of a new type for the orchestrator. Each is dead-lettered with a reason that
    says so, counted as `unknown_type`, and the next task still runs."""
    request = msgspec.json.decode(msgspec.json.encode(
        PlanRequest(task_id="t-new-type", round=1, task_text="x")))
    request["type"] = "plan_request_v2"
    report = WorkReport(role="researcher", model="m", prompt_version="1",
                        simulated_model=True, usage=TokenUsage(), duration_s=0.0, worker="w")
    result = msgspec.json.decode(msgspec.json.encode(
        StepResult(task_id="t-new-type", round=1, step_id="r1", report=report)))
    result["type"] = "step_result_v2"
    before_work = bad_input("unknown_type", "work.planner")
    before_results = bad_input("unknown_type", "results")
    async with mixed_stack(nats_server.url, model_url, "agents", add_fields,
                           tools) as (client, _):
        await client.js.publish(subjects.work("planner"), json.dumps(request).encode(),
                                stream=subjects.WORK_STREAM)
        await client.js.publish(subjects.results("t-new-type"), json.dumps(result).encode(),
                                stream=subjects.RESULTS_STREAM)
        with anyio.fail_after(60):
            while (bad_input("unknown_type", "work.planner") == before_work
                   or bad_input("unknown_type", "results") == before_results):
                await anyio.sleep(0.05)
        # counted before the dead letter is published: wait for the messages themselves
        work_dlq = await _dead_letter_of(client, "planner")
        result_dlq = await _dead_letter_of(client, "orchestrator")
        accepted = await client.submit(SubmitTask(text="A task after the new types"))
        assert isinstance(await final_event(client, accepted.task_id), TaskCompleted)
    for dlq, tag in ((work_dlq, "plan_request_v2"), (result_dlq, "step_result_v2")):
        assert dlq.headers is not None
        reason = dlq.headers["Crewbus-Dead-Letter-Reason"]
        assert f"message type '{tag}' at `$.type` is not one this service accepts" in reason
        assert "newer service" in reason


async def _dead_letter_of(client: CrewbusClient, role: str) -> RawStreamMsg:
    """The last dead letter of `role`, once it is stored."""
    with anyio.fail_after(60):
        while True:
            try:
                return await client.js.get_last_msg(subjects.DLQ_STREAM,
                                                    subjects.dead_letter(role))
            except NotFoundError:
                await anyio.sleep(0.05)


async def test_an_older_watcher_skips_an_event_type_it_does_not_know(
    nats_server: NatsServer,
) -> None:
    """A newer orchestrator may emit a new kind of event; `crewbus watch` on an older CLI
    keeps following the task to its end instead of failing on it."""
    nc = await nats.connect(nats_server.url)
    await ensure_topology(nc.jetstream(), OrchestratorSettings(nats_url=nats_server.url))
    client = CrewbusClient(nc)
    new_kind = {"type": "task_degraded", "schema_version": 1, "task_id": "t1", "at": 1.0}
    done = TaskCompleted(task_id="t1", at=2.0, result=TaskResult(
        answer="42", score=0.9, verdict="accept", accepted=True, rounds=1))
    for kind, data in (("task_degraded", json.dumps(new_kind).encode()),
                       ("task_completed", msgspec.json.encode(done))):
        await client.js.publish(subjects.events("t1", kind), data,
                                stream=subjects.EVENTS_STREAM)
    with anyio.fail_after(60):
        seen = [event async for event in client.events("t1")]
    await nc.close()
    assert seen == [done]
