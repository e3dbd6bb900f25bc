"""The OpenAI-compatible front door with the unmodified `openai` client: a chat completion
runs the last user message as a task, streaming and not; what is not supported is a 400
that names the field."""

from __future__ import annotations

import openai
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimulatedModel
from crewbus.variants import VariantStore
from crewbus_contracts import subjects
from crewbus_contracts.apikeys import Scope
from tests.gateway_helpers import http_stack, keys_enforced

pytestmark = pytest.mark.anyio


def client_for(url: str, key: str = "no-key-needed") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


async def test_a_chat_completion_runs_the_last_user_message_as_a_task(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s, \
            client_for(s.gateway.url) as ai:
        listed = await ai.models.list()
        reply = await ai.chat.completions.create(
            model="crewbus", messages=[
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "An earlier question"},
                {"role": "assistant", "content": "An earlier answer"},
                {"role": "user", "content": "Compare NATS JetStream and Kafka"}],
            temperature=0.2, metadata={"team": "search"}, user="ada")
        task_id = reply.id.removeprefix("chatcmpl-")
        state = await s.client.state(task_id)
    assert [m.id for m in listed.data] == ["crewbus"]
    assert state is not None and state.status == "completed"
    assert state.text == "Compare NATS JetStream and Kafka"
    assert state.metadata == {"team": "search", "openai_user": "ada"}
    assert state.result is not None
    (choice,) = reply.choices
    assert choice.message.content == state.result.answer and choice.finish_reason == "stop"
    assert reply.model == "crewbus" and reply.usage is not None
    assert reply.usage.total_tokens == state.result.usage.input_tokens + \
        state.result.usage.output_tokens > 0


async def test_a_streamed_completion_sends_progress_then_the_answer_then_usage(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s, \
            client_for(s.gateway.url) as ai:
        stream = await ai.chat.completions.create(
            model="crewbus", messages=[{"role": "user", "content": "Plan a JetStream migration"}],
            stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        task_id = chunks[0].id.removeprefix("chatcmpl-")
        state = await s.client.state(task_id)
    assert state is not None and state.result is not None
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    progress = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                       for c in chunks if c.choices)
    assert content == state.result.answer
    assert "planned" in progress and "critique" in progress
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens > 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"n": 2}, "n"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"model": "crewbus/concise"}, "model"),
    ({"model": "gpt-4o"}, "model"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ({"messages": [{"role": "system", "content": "only a system message"}]}, "messages"),
])
async def test_what_is_not_supported_is_a_400_naming_the_field(
    nats_server: NatsServer, model: SimulatedModel, kwargs: dict, field: str  # type: ignore[type-arg]
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s, \
            client_for(s.gateway.url) as ai:
        request = {"model": "crewbus", "messages": [{"role": "user", "content": "hi"}],
                   **kwargs}
        with pytest.raises(openai.BadRequestError) as refused:
            await ai.chat.completions.create(**request)
    assert field in str(refused.value)
    if field == "model" and "/" in request["model"]:
        assert "variant" in str(refused.value) and "concise" in str(refused.value)


async def test_crewbus_slash_a_variant_runs_the_task_under_that_variant(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s, \
            client_for(s.gateway.url) as ai:
        kv = await s.client.js.key_value(subjects.VARIANTS_KV)
        await VariantStore(kv).set_role("warm", "critic", {"temperature": 0.9})
        listed = [m.id for m in (await ai.models.list()).data]
        reply = await ai.chat.completions.create(
            model="crewbus/warm", messages=[{"role": "user", "content": "Under a variant"}])
        state = await s.client.state(reply.id.removeprefix("chatcmpl-"))
    assert listed == ["crewbus", "crewbus/warm"]
    assert state is not None and state.variant == "warm" and state.status == "completed"
    assert reply.model == "crewbus/warm"


async def test_the_openai_client_sees_a_missing_scope_as_permission_denied(
    nats_server: NatsServer, model: SimulatedModel
) -> None:

    async with http_stack(nats_server.url, model.base_url) as s:
        scopes: list[Scope] = ["read"]
        key, _ = await s.gateway.app.state.bus.keys.create("reader", scopes)
        await keys_enforced(s.http)
        async with client_for(s.gateway.url, key) as ai, client_for(s.gateway.url) as anon:
            models = await ai.models.list()
            with pytest.raises(openai.PermissionDeniedError) as refused:
                await ai.chat.completions.create(
                    model="crewbus", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.AuthenticationError):
                await anon.models.list()
    assert [m.id for m in models.data] == ["crewbus"]
    assert "submit" in str(refused.value)
