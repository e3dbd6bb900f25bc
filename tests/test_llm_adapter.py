"""LLMClient against the simulated model over real HTTP: validation retry, errors, usage."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from prometheus_client import REGISTRY

from crewbus.llm import (
    DEFAULT_MODEL,
    SIMULATED_MODEL_NAME,
    LLMClient,
    LLMRequestError,
    LLMSettings,
    LLMUnavailableError,
    ModelHint,
    OutputValidationError,
    SimReply,
    SimulatedModel,
    llm_settings_for,
    uses_simulated_model,
)
from crewbus_agents.roles.plan_repair import repair_plan_reply
from crewbus_contracts import Critique, Plan, StepOutput

SECRET = "sk-test-9f8e7d6c5b4a-never-show-me"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedModel]:
    async with SimulatedModel() as model:
        yield model


def _client(sim: SimulatedModel, role: str = "planner", **kwargs: object) -> LLMClient:
    assert sim.base_url is not None
    return LLMClient(msgspec.convert({"base_url": sim.base_url, **kwargs}, LLMSettings), role)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_contract_replies_validate_and_report_usage(
    sim: SimulatedModel, stream: bool
) -> None:
    async with _client(sim, stream=stream) as llm:
        plan = await llm.structured("You plan.", "Task: ship the release notes", Plan)
        step = await llm.structured("You execute.", "Instruction: summarise r1", StepOutput)
        critique = await llm.structured("You judge.", "Judge this answer", Critique)
    assert len(plan.value.steps) == 4
    assert step.value.content.startswith("[simulated]")
    assert critique.value.score >= 0.75
    for completion in (plan, step, critique):
        assert completion.model == SIMULATED_MODEL_NAME
        assert completion.simulated
        assert completion.validation_retries == 0
        assert completion.usage.calls == 1
        assert completion.usage.input_tokens > 0
        assert completion.usage.output_tokens > 0
        assert completion.duration_s > 0
        assert (completion.time_to_first_token_s is not None) == stream


@pytest.mark.anyio
async def test_agent_header_and_self_contained_schema_are_sent(sim: SimulatedModel) -> None:
    async with _client(sim, role="critic") as llm:
        await llm.structured("s", "u", Plan)
    agent, body = sim.requests[0]
    assert agent == "critic"
    spec = body["response_format"]["json_schema"]
    assert spec["name"] == "Plan"
    assert spec["schema"]["type"] == "object"
    assert "$ref" not in json.dumps(spec["schema"])
    assert spec["schema"]["additionalProperties"] is False
    assert spec["schema"]["properties"]["steps"]["items"]["additionalProperties"] is False


@pytest.mark.anyio
async def test_the_hint_goes_to_the_simulated_model_only(sim: SimulatedModel) -> None:
    """A real server never sees `X-Crewbus-Hint`: nothing about the task goes into a header
    that a proxy may log."""
    hint = ModelHint(task="ship the release notes", step="r1", memory=("m1",))
    async with _client(sim) as llm:
        await llm.structured("s", "u", StepOutput, hint=hint)
        await llm.chat([{"role": "user", "content": "u"}], hint=hint)
    assert sim.base_url is not None
    real = LLMSettings(model="gpt-real", base_url=sim.base_url, api_key=SECRET)
    async with LLMClient(real, "planner") as llm:
        await llm.structured("s", "u", StepOutput, hint=hint)
        await llm.chat([{"role": "user", "content": "u"}], hint=hint)
    assert sim.hints == [msgspec.structs.replace(hint, output="StepOutput"), hint, None, None]
    assert [r.agent for r in sim.requests] == ["planner"] * 4


@pytest.mark.anyio
async def test_request_options_built_once_still_carry_each_calls_own_headers(
    sim: SimulatedModel,
) -> None:
    """The non-streamed call copies request options built once per client: every call
    still gets its own hint, the key, the agent, and a retry count per attempt."""
    assert sim.base_url is not None
    sim.script("*", SimReply(status=500, content="boom"))
    real = LLMSettings(model="gpt-real", base_url=sim.base_url, api_key=SECRET,
                       max_transport_retries=1)
    async with _client(sim, role="executor") as llm, LLMClient(real, "critic") as keyed:
        await keyed.structured("s", "u", StepOutput, hint=ModelHint(step="r0"))
        await llm.structured("s", "u", StepOutput, hint=ModelHint(step="r1"))
        await llm.structured("s", "u", StepOutput, hint=ModelHint(step="r2"))
        await llm.structured("s", "u", StepOutput)
    assert [h.step if h else None for h in sim.hints] == [None, None, "r1", "r2", ""]
    assert [h["x-stainless-retry-count"] for h in sim.headers] == ["0", "1", "0", "0", "0"]
    assert [h["x-crewbus-agent"] for h in sim.headers] == ["critic"] * 2 + ["executor"] * 3
    assert [h["authorization"] for h in sim.headers[:2]] == [f"Bearer {SECRET}"] * 2
    assert {h["authorization"] for h in sim.headers[2:]} == {"Bearer sk-simulated-no-key"}
    assert {h["content-type"] for h in sim.headers} == {"application/json"}
    assert [len(r.body["messages"]) for r in sim.requests] == [2] * 5


@pytest.mark.anyio
async def test_a_reply_with_a_field_the_contract_lacks_is_sent_back_with_its_path(
    sim: SimulatedModel,
) -> None:
    """The bus ignores unknown fields; a model's reply does not: a misspelt `depends_on`
    dropped in silence would run dependent steps in parallel."""
    misspelt = {"steps": [
        {"id": "a", "role": "researcher", "instruction": "x"},
        {"id": "b", "role": "executor", "instruction": "y", "dependencies": ["a"]},
    ]}
    sim.script("planner", SimReply(content=json.dumps(misspelt)))
    async with _client(sim) as llm:
        completion = await llm.structured("s", "u", Plan)
    assert completion.validation_retries == 1
    retry = sim.requests[1].body["messages"][-1]["content"]
    assert "unknown field(s) `$.steps[1].dependencies`" in retry


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_invalid_reply_is_shown_its_error_and_the_retry_succeeds(
    sim: SimulatedModel, stream: bool
) -> None:
    sim.script("executor", SimReply(content='{"content": 42}'))
    async with _client(sim, role="executor", stream=stream) as llm:
        completion = await llm.structured("s", "Instruction: do it", StepOutput)
    assert completion.validation_retries == 1
    assert completion.usage.calls == 2
    assert completion.value.content.startswith("[simulated]")
    retry = sim.requests[1].body["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"content": 42}'}
    assert retry[-1]["role"] == "user"
    assert "Your reply did not validate" in retry[-1]["content"]
    assert "Expected `str`, got `int` - at `$.content`" in retry[-1]["content"]


@pytest.mark.anyio
async def test_invalid_twice_raises_with_the_validation_error(sim: SimulatedModel) -> None:
    sim.script("planner", SimReply(content="not json"), SimReply(content='{"steps": []}'))
    async with _client(sim) as llm:
        with pytest.raises(OutputValidationError) as caught:
            await llm.structured("s", "u", Plan)
    error = caught.value
    assert "Expected `array` of length >= 1" in str(error)
    assert "$.steps" in error.validation_error
    assert error.attempts == 2
    assert error.usage.calls == 2
    assert len(sim.requests) == 2


@pytest.mark.anyio
async def test_invariant_violation_counts_as_invalid(sim: SimulatedModel) -> None:
    cyclic = {
        "steps": [
            {"id": "a", "role": "executor", "instruction": "x", "depends_on": ["b"]},
            {"id": "b", "role": "executor", "instruction": "y", "depends_on": ["a"]},
        ]
    }
    sim.script("planner", SimReply(content=json.dumps(cyclic)))
    async with _client(sim, max_validation_retries=0) as llm:
        with pytest.raises(OutputValidationError, match="dependency cycle"):
            await llm.structured("s", "u", Plan)


@pytest.mark.anyio
async def test_a_repairable_reply_is_repaired_without_another_turn(sim: SimulatedModel) -> None:
    duplicate = {"steps": [
        {"id": "a", "role": "researcher", "instruction": "x"},
        {"id": "a", "role": "executor", "instruction": "y", "depends_on": ["a"]},
    ]}
    sim.script("planner", SimReply(content=f"```json\n{json.dumps(duplicate)}\n```"))
    retries = _validation_retries("planner")
    async with _client(sim) as llm:
        completion = await llm.structured("s", "u", Plan, repair=repair_plan_reply)
    assert len(sim.requests) == 1
    assert completion.validation_retries == 0
    assert _validation_retries("planner") == retries
    assert [(s.id, s.depends_on) for s in completion.value.steps] == [("a", []), ("a-2", ["a"])]
    assert completion.repairs == ["step 2 repeated the id 'a': renamed it 'a-2'"]


@pytest.mark.anyio
async def test_an_unrepairable_reply_still_gets_the_validation_retry(sim: SimulatedModel) -> None:
    sim.script("planner", SimReply(content='{"steps": []}'))
    retries = _validation_retries("planner")
    async with _client(sim) as llm:
        completion = await llm.structured("s", "u", Plan, repair=repair_plan_reply)
    assert _validation_retries("planner") == retries + 1
    assert len(sim.requests) == 2
    assert completion.validation_retries == 1
    assert completion.repairs == []
    assert "Expected `array` of length >= 1" in sim.requests[1].body["messages"][-1]["content"]


def _validation_retries(agent: str) -> float:
    labels = {"agent": agent, "model": LLMSettings().model}
    return REGISTRY.get_sample_value("crewbus_llm_validation_retries_total", labels) or 0.0


@pytest.mark.anyio
async def test_fenced_json_from_local_models_is_accepted(sim: SimulatedModel) -> None:
    sim.script("*", SimReply(content='```json\n{"content": "fenced"}\n```'))
    async with _client(sim) as llm:
        completion = await llm.structured("s", "u", StepOutput)
    assert completion.value.content == "fenced"
    assert completion.validation_retries == 0


@pytest.mark.anyio
async def test_server_error_is_retryable_and_transport_retries_are_bounded(
    sim: SimulatedModel,
) -> None:
    sim.script("*", SimReply(status=500, content="boom"), SimReply(status=500, content="boom"))
    async with _client(sim, max_transport_retries=1) as llm:
        with pytest.raises(LLMUnavailableError, match="HTTP 500") as caught:
            await llm.structured("s", "u", StepOutput)
    assert caught.value.status == 500
    assert len(sim.requests) == 2


@pytest.mark.anyio
async def test_rate_limit_is_retryable(sim: SimulatedModel) -> None:
    sim.script("*", SimReply(status=429, content="slow down"))
    async with _client(sim, max_transport_retries=0, stream=True) as llm:
        with pytest.raises(LLMUnavailableError, match="429"):
            await llm.chat([{"role": "user", "content": "hi"}])


@pytest.mark.anyio
async def test_unreachable_model_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = LLMSettings(base_url=f"http://127.0.0.1:{port}/v1", max_transport_retries=0)
    async with LLMClient(settings, "planner") as llm:
        with pytest.raises(LLMUnavailableError, match="unreachable"):
            await llm.structured("s", "u", Plan)


@pytest.mark.anyio
async def test_rejected_request_is_terminal_and_never_shows_the_key(sim: SimulatedModel) -> None:
    sim.script("*", SimReply(status=401, content=f"Incorrect API key provided: {SECRET}"))
    assert sim.base_url is not None
    settings = LLMSettings(model="gpt-real", base_url=sim.base_url, api_key=SECRET)
    async with LLMClient(settings, "planner") as llm:
        with pytest.raises(LLMRequestError) as caught:
            await llm.structured("s", "u", Plan)
    assert caught.value.status == 401
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    assert "***" in str(caught.value)


@pytest.mark.anyio
async def test_scripted_delay_is_felt_by_the_caller(sim: SimulatedModel) -> None:
    sim.script("*", SimReply(content='{"content": "slow"}', delay_s=0.25))
    async with _client(sim) as llm:
        started = time.perf_counter()
        completion = await llm.structured("s", "u", StepOutput)
    assert time.perf_counter() - started >= 0.25
    assert completion.duration_s >= 0.25


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_chat_returns_tool_calls_for_a_tool_loop(sim: SimulatedModel, stream: bool) -> None:
    args = json.dumps({"query": "jetstream competing consumers"})
    sim.script("researcher", SimReply(tool_calls=[("search", args), ("recall", "{}")]))
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    messages = [{"role": "user", "content": "find it"}]
    async with _client(sim, role="researcher", stream=stream) as llm:
        turn = await llm.chat(messages, tools=tools)
        assert [(c.name, c.arguments) for c in turn.tool_calls] == [
            ("search", args),
            ("recall", "{}"),
        ]
        assert turn.finish_reason == "tool_calls"
        assert turn.usage.calls == 1
        followup = [
            *messages,
            turn.assistant_message(),
            {"role": "tool", "tool_call_id": turn.tool_calls[0].id, "content": "found"},
        ]
        final = await llm.chat(followup, tools=tools)
    assert final.content is not None
    assert final.content.startswith("[simulated]")
    assert sim.requests[1].body["messages"][1]["tool_calls"][0]["function"]["name"] == "search"


def test_api_key_never_appears_in_settings_repr() -> None:
    settings = LLMSettings(model="gpt-real", api_key=SECRET)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in f"{[settings]}"
    assert "api_key='***'" in repr(settings)


def test_settings_read_role_overrides_then_shared_then_openai() -> None:
    env = {
        "CREWBUS_MODEL": "shared-model",
        "CREWBUS_CRITIC_MODEL": "critic-model",
        "CREWBUS_CRITIC_BASE_URL": "http://127.0.0.1:9999/v1",
        "CREWBUS_CRITIC_API_KEY": "sk-critic",
        "CREWBUS_CRITIC_STREAM": "true",
        "CREWBUS_LLM_TIMEOUT_S": "7.5",
        "OPENAI_API_KEY": "sk-openai",
        "OPENAI_BASE_URL": "http://127.0.0.1:8888/v1",
        "CREWBUS_PLANNER_MODEL": "",
    }
    critic = llm_settings_for("critic", env)
    planner = llm_settings_for("planner", env)
    assert (critic.model, critic.base_url, critic.api_key) == (
        "critic-model",
        "http://127.0.0.1:9999/v1",
        "sk-critic",
    )
    assert critic.stream is True
    assert (planner.model, planner.base_url, planner.api_key) == (
        "shared-model",
        "http://127.0.0.1:8888/v1",
        "sk-openai",
    )
    assert planner.stream is False
    assert critic.timeout_s == planner.timeout_s == 7.5


def test_simulated_model_is_the_default_and_a_real_model_is_opt_in() -> None:
    assert llm_settings_for("planner", {}) == LLMSettings()
    assert uses_simulated_model(llm_settings_for("planner", {}))
    key_only = llm_settings_for("planner", {"OPENAI_API_KEY": "sk-x"})
    assert not uses_simulated_model(key_only) and key_only.model == DEFAULT_MODEL
    assert uses_simulated_model(LLMSettings(model="llama3"))
    real = {"CREWBUS_MODEL": "gpt-4o-mini", "OPENAI_API_KEY": "sk-x"}
    assert not uses_simulated_model(llm_settings_for("planner", real))
    local = {"CREWBUS_MODEL": "llama3", "CREWBUS_LLM_BASE_URL": "http://127.0.0.1:11434/v1"}
    assert not uses_simulated_model(llm_settings_for("executor", local))


def test_bad_setting_fails_loudly_without_echoing_values() -> None:
    with pytest.raises(msgspec.ValidationError, match="timeout_s") as caught:
        llm_settings_for("planner", {"CREWBUS_LLM_TIMEOUT_S": "-1", "OPENAI_API_KEY": SECRET})
    assert SECRET not in str(caught.value)
