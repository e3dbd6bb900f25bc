"""Variants on a real stack (nats-server, orchestrator, one replica per role, the simulated
model): a label move reaches the running agents without a restart, two variants are
served side by side by the same replicas, and a variant that does not resolve is refused
at submission or fails its work, never served as production.

The simulated model never reads prompts, so what each task was served with is read from
the requests it recorded (the system message, the model, the temperature) and from the
task's state and trace."""

from __future__ import annotations

import json
from typing import Any

import anyio
import msgspec
import pytest
from nats.aio.client import Client as NATS

from crewbus.client import CrewbusClient, SubmissionRefusedError
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.adapter import LLMClient
from crewbus.llm.settings import SIMULATED_MODEL_NAME, LLMSettings, ModelEndpoint
from crewbus.llm.simulated import SimulatedModel
from crewbus.tracing import read_trace
from crewbus.variants import EndpointError, PromptStore, ResolvedRole, VariantStore
from crewbus.variants.seed import seed_packaged_prompts
from crewbus_agents.model_clients import ModelClients
from crewbus_agents.prompts import Prompt
from crewbus_agents.roles import AGENTS
from crewbus_contracts import (
    PRODUCTION,
    Critique,
    SubmitTask,
    TaskCompleted,
    TaskFailed,
    TaskLimits,
    TaskState,
    subjects,
)
from crewbus_contracts.traces import Span
from tests.stack import final_event, in_process_agents, in_process_stack

pytestmark = pytest.mark.anyio

TERSE = Prompt(version="critic-terse", text="You are the critic. Judge tersely: one reason.")
PLANNER_B = Prompt(version="planner-b", text="You are the planner. Plan in two steps.")
ONE_ROUND = TaskLimits(max_rounds=1)


async def stores(client: CrewbusClient) -> tuple[PromptStore, VariantStore]:
    js = client.js
    return (PromptStore(await js.key_value(subjects.PROMPTS_KV)),
            VariantStore(await js.key_value(subjects.VARIANTS_KV)))


async def run_task(client: CrewbusClient, text: str, variant: str = PRODUCTION) -> TaskState:
    accepted = await client.submit(SubmitTask(text=text, variant=variant, limits=ONE_ROUND))
    event = await final_event(client, accepted.task_id, timeout_s=60)
    assert isinstance(event, TaskCompleted), event
    state = await client.state(accepted.task_id)
    assert state is not None
    return state


def requests_of(model: SimulatedModel, agent: str, task_text: str) -> list[dict[str, Any]]:
    """The bodies `agent` sent for the task with this text (the hint names the task)."""
    return [request.body for request, hint in zip(model.requests, model.hints, strict=True)
            if request.agent == agent and hint is not None and hint.task == task_text]


def system_of(body: dict[str, Any]) -> str:
    first = body["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def agent_span(client: CrewbusClient, task_id: str, role: str) -> Span:
    """The task's `invoke_agent <role>` span, once its writer has stored it."""
    with anyio.fail_after(60):
        while True:
            spans = await read_trace(client.js, task_id)
            found = [s for s in spans if s.name == f"invoke_agent {role}"]
            if found:
                return found[0]
            await anyio.sleep(0.1)


async def test_a_label_move_reaches_the_running_agents_without_a_restart(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with in_process_stack(nats_server.url, model.base_url) as client:
        prompts, _ = await stores(client)
        before = await run_task(client, "Before the move")
        assert before.rounds[0].critic.prompt_version == "1"
        [body] = requests_of(model, "critic", "Before the move")
        assert system_of(body) == AGENTS["critic"].prompt.text

        assert (await prompts.push("critic", TERSE)).number == 2
        assert await prompts.label("critic", 2, PRODUCTION) == 1
        moved_at = anyio.current_time()
        # The replicas' watches deliver the move within milliseconds; allow a busy machine
        # seconds, one task at a time, and say how many tasks it took.
        with anyio.fail_after(30):
            for attempt in range(100):
                text = f"After the move, try {attempt}"
                after = await run_task(client, text)
                if after.rounds[0].critic.prompt_version == "2":
                    break
        [body] = requests_of(model, "critic", text)
        assert system_of(body) == TERSE.text
        assert attempt == 0, f"the move took {attempt + 1} tasks to arrive"
        assert anyio.current_time() - moved_at < 30

        await prompts.label("critic", 1, PRODUCTION)  # roll back, still without a restart
        with anyio.fail_after(30):
            for attempt in range(100):
                text = f"After the roll-back, try {attempt}"
                if (await run_task(client, text)).rounds[0].critic.prompt_version == "1":
                    break
        [body] = requests_of(model, "critic", text)
        assert system_of(body) == AGENTS["critic"].prompt.text


async def test_two_variants_are_served_side_by_side_by_the_same_replicas(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with in_process_stack(nats_server.url, model.base_url) as client:
        prompts, variants = await stores(client)
        await prompts.push("critic", TERSE, label="candidate")
        await prompts.push("planner", PLANNER_B)
        await variants.set_role("terse", "critic", {"prompt": "candidate",
                                                    "model": "gpt-4o-mini"})
        await variants.set_role("terse", "planner", {"prompt": "2", "temperature": 0.3})
        states: dict[str, TaskState] = {}

        async def one(text: str, variant: str) -> None:
            states[text] = await run_task(client, text, variant)

        async with anyio.create_task_group() as tg:  # interleaved on the same replicas
            for i in range(3):
                tg.start_soon(one, f"Production task {i}", PRODUCTION)
                tg.start_soon(one, f"Terse task {i}", "terse")

        for text, state in states.items():
            terse = text.startswith("Terse")
            round_ = state.rounds[0]
            assert state.variant == ("terse" if terse else PRODUCTION)
            assert round_.critic.prompt_version == ("2" if terse else "1")
            assert round_.planner.prompt_version == ("2" if terse else "1")
            assert {s.prompt_version for s in round_.steps.values()} == {"1"}
            [critic] = requests_of(model, "critic", text)
            assert system_of(critic) == (TERSE if terse else AGENTS["critic"].prompt).text
            assert critic["model"] == ("gpt-4o-mini" if terse else SIMULATED_MODEL_NAME)
            [planner] = requests_of(model, "planner", text)
            assert system_of(planner) == (PLANNER_B if terse else AGENTS["planner"].prompt).text
            assert planner.get("temperature") == (0.3 if terse else None)
            assert round_.critic.model == "crewbus-simulated"  # the server that answered

            span = await agent_span(client, state.task_id, "critic")
            assert span.attributes["crewbus.variant"] == state.variant
            assert span.attributes["crewbus.prompt_version"] == round_.critic.prompt_version
            assert span.attributes["gen_ai.request.model"] == critic["model"]
            assert span.input is not None and span.input["system"] == system_of(critic)
            with anyio.fail_after(60):
                while not (chats := [c for c in await read_trace(client.js, state.task_id)
                                     if c.parent_span_id == span.span_id]):
                    await anyio.sleep(0.1)
            assert {c.attributes["crewbus.prompt_version"] for c in chats} == {
                round_.critic.prompt_version}
        workers = {s.rounds[0].critic.worker for s in states.values()}
        assert len(workers) == 1  # one critic replica served both variants


async def test_a_variant_that_does_not_resolve_is_refused_at_submission(
    nats_server: NatsServer, model: SimulatedModel, nc: NATS
) -> None:
    async with in_process_stack(nats_server.url, model.base_url) as client:
        _, variants = await stores(client)
        await variants.set_role("ghost", "critic", {"prompt": "gone"})
        await variants.set_role("far", "executor", {"prompt": "9"})
        refusals = {
            "nosuch": "variant 'nosuch' does not exist",
            "ghost": "variant 'ghost' asks for critic prompt 'gone', which does not exist "
                     "(version 1; labels production=1)",
            "far": "variant 'far' asks for executor prompt '9', which does not exist",
        }
        for variant, message in refusals.items():
            key = f"refused-{variant}"
            with pytest.raises(SubmissionRefusedError) as refused:
                await client.submit(SubmitTask(text="Do it", variant=variant,
                                               idempotency_key=key))
            assert refused.value.reply.code == "invalid_message"
            assert message in refused.value.reply.message
            assert "`$.variant`" in refused.value.reply.message
        bad_name = msgspec.json.encode({"type": "submit_task", "text": "x", "variant": "a b"})
        reply = json.loads((await nc.request(subjects.SUBMIT, bad_name, timeout=30)).data)
        assert reply["type"] == "error_reply" and "$.variant" in reply["message"]
        assert (await run_task(client, "Production still runs")).variant == PRODUCTION


async def test_work_whose_variant_was_deleted_fails_and_is_never_served_as_production(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with in_process_stack(nats_server.url, model.base_url, roles=()) as client:
        prompts, variants = await stores(client)
        await seed_packaged_prompts(prompts)
        await prompts.push("critic", TERSE, label="candidate")
        await variants.set_role("brief", "critic", {"prompt": "candidate"})
        accepted = await client.submit(SubmitTask(
            text="Deleted under it", variant="brief",
            limits=TaskLimits(max_rounds=1, allow_degraded=False)))
        await variants.delete("brief")  # before any agent has taken the work
        async with in_process_agents(nats_server.url, model.base_url):
            event = await final_event(client, accepted.task_id, timeout_s=60)
    assert isinstance(event, TaskFailed), event
    assert event.error.code == "plan_failed"
    assert "variant 'brief'" in event.error.message
    assert "does not exist" in event.error.message
    assert model.requests == []  # no model was asked with any prompt


async def test_model_clients_are_made_per_endpoint_and_model_and_read_keys_from_the_env(
    model: SimulatedModel,
) -> None:
    async with SimulatedModel() as other:
        assert other.base_url is not None and model.base_url is not None
        base = LLMClient(LLMSettings(model=SIMULATED_MODEL_NAME, base_url=model.base_url),
                         "critic")
        endpoints = {"other": ModelEndpoint(base_url=other.base_url, api_key_env="OTHER_KEY"),
                     "keyless": ModelEndpoint(base_url=other.base_url)}
        clients = ModelClients(base, endpoints, env={"OTHER_KEY": "sk-other-secret"})
        try:
            chosen = clients.client("other", SIMULATED_MODEL_NAME)
            assert chosen is clients.client("other", SIMULATED_MODEL_NAME)  # cached
            assert chosen is not clients.client("other", "gpt-4o-mini")
            assert chosen.settings.api_key == "sk-other-secret"
            assert clients.client("keyless", "m").settings.api_key is None
            await chosen.structured("system", "judge", Critique)
            assert len(other.requests) == 1 and model.requests == []
            tuned = clients.for_work(ResolvedRole(
                variant="v", role="critic", prompt_number=1, prompt_name="n",
                prompt_text="t", prompt_sha256="s", temperature=0.5))
            assert tuned.settings.temperature == 0.5 and tuned.settings.model == (
                SIMULATED_MODEL_NAME)
            await tuned.structured("system", "judge", Critique)
            assert model.requests[-1].body["temperature"] == 0.5

            with pytest.raises(EndpointError, match="'nosuch' is not configured") as unknown:
                clients.client("nosuch", "m")
            assert "other" in str(unknown.value)
            missing = ModelClients(base, endpoints, env={})
            with pytest.raises(EndpointError, match=r"\$OTHER_KEY, which is not set"):
                missing.client("other", "m")
            with pytest.raises(EndpointError, match="without a model"):
                clients.client("other", None)
        finally:
            await clients.aclose()
            await base.aclose()
