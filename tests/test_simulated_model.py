"""The simulated model over real HTTP, driven by the real openai client."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
import msgspec
import openai
import pytest

from crewbus.llm import (
    HINT_HEADER,
    SIMULATED_MODEL_NAME,
    ModelHint,
    SimReply,
    SimulatedModel,
    response_schema,
    serve_simulated_model,
)
from crewbus.llm.schema_values import value_for
from crewbus_contracts import Critique, Plan, StepOutput, SubmitTask, TaskResult


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedModel]:
    async with SimulatedModel() as model:
        yield model


@pytest.fixture
async def client(sim: SimulatedModel) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-simulated-no-key", max_retries=0
    ) as c:
        yield c


def _schema_format(output_type: type[msgspec.Struct]) -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": output_type.__name__, "schema": response_schema(output_type)},
    }


async def _ask(
    client: openai.AsyncOpenAI, text: str, output_type: type[msgspec.Struct], agent: str = "*",
    **hint: Any,
) -> Any:
    """Ask as crewbus does: the agent and the work's hint in headers, the prompt in `text`."""
    reply = await client.chat.completions.create(
        model=SIMULATED_MODEL_NAME,
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": text}],
        response_format=_schema_format(output_type),
        extra_headers={
            "X-Crewbus-Agent": agent,
            HINT_HEADER: ModelHint(output=output_type.__name__, **hint).header_value(),
        },
    )
    return reply


@pytest.mark.anyio
async def test_server_binds_loopback_and_serves_openai_paths(sim: SimulatedModel) -> None:
    assert sim.base_url is not None
    assert sim.base_url.startswith("http://127.0.0.1:")
    assert sim.base_url.endswith("/v1")


@pytest.mark.anyio
async def test_plan_has_two_parallel_researchers_then_two_chained_executors(
    client: openai.AsyncOpenAI,
) -> None:
    reply = await _ask(client, "Task: compare NATS and Kafka for IoT", Plan,
                       task="compare NATS and Kafka for IoT")
    plan = msgspec.json.decode(reply.choices[0].message.content, type=Plan)
    shape = [(s.id, s.role, s.depends_on) for s in plan.steps]
    assert shape == [
        ("r1", "researcher", []),
        ("r2", "researcher", []),
        ("e1", "executor", ["r1", "r2"]),
        ("e2", "executor", ["e1"]),
    ]
    assert all("compare NATS and Kafka for IoT" in s.instruction for s in plan.steps)


@pytest.mark.anyio
async def test_every_reply_names_the_simulated_model(client: openai.AsyncOpenAI) -> None:
    reply = await _ask(client, "anything", StepOutput)
    assert reply.model == SIMULATED_MODEL_NAME
    assert reply.system_fingerprint == SIMULATED_MODEL_NAME
    output = msgspec.json.decode(reply.choices[0].message.content, type=StepOutput)
    assert output.content.startswith("[simulated]")
    assert output.sources == []
    models = await client.models.list()
    assert [m.id for m in models.data] == [SIMULATED_MODEL_NAME]


@pytest.mark.anyio
async def test_critique_passes_the_default_bar_and_is_deterministic(
    client: openai.AsyncOpenAI,
) -> None:
    scores = []
    for text in ("answer one", "answer two", "answer one"):
        reply = await _ask(client, text, Critique)
        critique = msgspec.json.decode(reply.choices[0].message.content, type=Critique)
        assert critique.verdict == "accept"
        assert 0.75 <= critique.score <= 0.95
        assert critique.reasons
        scores.append(critique.score)
    assert scores[0] == scores[2]


@pytest.mark.anyio
async def test_plain_request_gets_simulated_text_and_usage(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model=SIMULATED_MODEL_NAME, messages=[{"role": "user", "content": "hello there"}]
    )
    assert reply.choices[0].message.content == "[simulated] reply to: hello there"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.anyio
async def test_stream_ends_with_a_usage_chunk_when_asked(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=SIMULATED_MODEL_NAME,
        messages=[{"role": "user", "content": "stream me a reply"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[simulated] reply to: stream me a reply"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.model == SIMULATED_MODEL_NAME for c in chunks)


@pytest.mark.anyio
async def test_scripts_are_per_agent_and_star_answers_anyone(
    sim: SimulatedModel, client: openai.AsyncOpenAI
) -> None:
    sim.script("critic", SimReply(content='{"score": 0.1, "verdict": "reject"}'))
    sim.script("*", SimReply(content='{"content": "for anyone"}'))
    planner = await _ask(client, "Task: x", StepOutput, agent="planner")
    critic = await _ask(client, "judge", Critique, agent="critic")
    critic_again = await _ask(client, "judge", Critique, agent="critic")
    assert planner.choices[0].message.content == '{"content": "for anyone"}'
    assert critic.choices[0].message.content == '{"score": 0.1, "verdict": "reject"}'
    assert msgspec.json.decode(critic_again.choices[0].message.content, type=Critique).score >= 0.75
    assert [r.agent for r in sim.requests] == ["planner", "critic", "critic"]


@pytest.mark.anyio
async def test_responder_answers_every_request_until_cleared(
    sim: SimulatedModel, client: openai.AsyncOpenAI
) -> None:
    sim.script("executor", lambda body: SimReply(content=f"{len(body['messages'])} messages"))
    for _ in range(2):
        reply = await _ask(client, "go", StepOutput, agent="executor")
        assert reply.choices[0].message.content == "2 messages"
    sim.clear("executor")
    reply = await _ask(client, "go", StepOutput, agent="executor")
    assert reply.choices[0].message.content.startswith('{"content": "[simulated]')


@pytest.mark.anyio
async def test_scripted_status_becomes_an_http_error(
    sim: SimulatedModel, client: openai.AsyncOpenAI
) -> None:
    sim.script("*", SimReply(status=503, content="overloaded"))
    with pytest.raises(openai.InternalServerError, match="overloaded"):
        await _ask(client, "x", StepOutput)


@pytest.mark.anyio
async def test_scripted_delay_is_honoured(sim: SimulatedModel, client: openai.AsyncOpenAI) -> None:
    sim.script("*", SimReply(content="late", delay_s=0.3))
    started = time.perf_counter()
    await _ask(client, "x", StepOutput)
    assert time.perf_counter() - started >= 0.3


@pytest.mark.anyio
async def test_latency_is_spread_over_stream_chunks() -> None:
    async with SimulatedModel(latency_s=0.4) as slow:
        client = openai.AsyncOpenAI(base_url=slow.base_url, api_key="sk-x")
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model=SIMULATED_MODEL_NAME,
            messages=[{"role": "user", "content": "a fairly long question to stream back"}],
            stream=True,
        )
        arrivals = [time.perf_counter() - started async for _ in stream]
        await client.close()
    assert arrivals[0] < 0.3
    assert arrivals[-1] >= 0.4


@pytest.mark.anyio
async def test_bad_body_gets_a_400_in_openai_shape(sim: SimulatedModel) -> None:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0) as c:
        with pytest.raises(openai.BadRequestError, match="messages"):
            await c.post("/chat/completions", body={"model": "m"}, cast_to=object)


@pytest.mark.anyio
async def test_embeddings_are_deterministic_and_related_texts_are_closer(
    client: openai.AsyncOpenAI,
) -> None:
    texts = ["nats jetstream consumer", "jetstream consumer ack", "baking sourdough bread"]
    first = await client.embeddings.create(model=SIMULATED_MODEL_NAME, input=texts)
    again = await client.embeddings.create(model=SIMULATED_MODEL_NAME, input=texts[0])
    vectors = [d.embedding for d in first.data]
    assert vectors[0] == pytest.approx(again.data[0].embedding, abs=1e-6)
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-4)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])


class _Kitchen(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=3, le=9, multiple_of=4)]
    ratio: Annotated[float, msgspec.Meta(gt=0, lt=1)]
    name: Annotated[str, msgspec.Meta(min_length=40, max_length=50)]
    slug: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{2,8}$")]
    items: Annotated[list[int], msgspec.Meta(min_length=3, max_length=3)]
    mode: Literal["fast", "slow"] | None
    tags: dict[str, int]
    pair: tuple[int, str]
    negative: Annotated[int, msgspec.Meta(lt=0)]
    flag: bool
    nested: list[StepOutput]


class _Tree(msgspec.Struct):
    label: str
    children: list[_Tree] = []


@pytest.mark.parametrize(
    "output_type", [Plan, StepOutput, Critique, TaskResult, SubmitTask, _Kitchen, _Tree]
)
def test_generic_schema_values_validate(output_type: type[msgspec.Struct]) -> None:
    for schema in (response_schema(output_type), msgspec.json.schema(output_type)):
        msgspec.convert(value_for(schema), output_type)


@pytest.mark.anyio
async def test_unknown_schema_gets_a_generated_valid_value(client: openai.AsyncOpenAI) -> None:
    reply = await _ask(client, "fill the kitchen", _Kitchen)
    value = msgspec.json.decode(reply.choices[0].message.content, type=_Kitchen)
    assert 3 <= value.count <= 9
    assert len(value.items) == 3


@pytest.mark.anyio
async def test_step_output_quotes_the_instruction_not_the_task(client: openai.AsyncOpenAI) -> None:
    prompt = "Task: plan a trip to Lisbon\nInstruction: list three museums\nInputs: none"
    reply = await _ask(client, prompt, StepOutput, task="plan a trip to Lisbon",
                       instruction="list three museums")
    output = msgspec.json.decode(reply.choices[0].message.content, type=StepOutput)
    assert output.content == "[simulated] result of: list three museums"


@pytest.mark.anyio
async def test_served_model_runs_until_cancelled() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_simulated_model, "127.0.0.1", port, 0.0)
        async with openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x", max_retries=0
        ) as c:
            for _ in range(100):
                try:
                    models = await c.models.list()
                    break
                except openai.APIConnectionError:
                    await anyio.sleep(0.02)
            assert [m.id for m in models.data] == [SIMULATED_MODEL_NAME]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_replies_come_from_the_hint_never_from_the_prompt(
    sim: SimulatedModel, client: openai.AsyncOpenAI
) -> None:
    """The prompt names one task and the hint another: the hint wins, so rewording a
    prompt cannot change what the simulated model answers."""
    prompt = "Task: bake bread\nInstruction: knead the dough\n[memory:m-prompt] flour"
    plan_reply = await _ask(client, prompt, Plan, task="compare brokers\nin detail")
    step_reply = await _ask(client, prompt, StepOutput, task="compare brokers",
                            instruction="list three brokers", memory=("m1", "m2", "m3", "m4"))
    plan = msgspec.json.decode(plan_reply.choices[0].message.content, type=Plan)
    step = msgspec.json.decode(step_reply.choices[0].message.content, type=StepOutput)
    assert all("compare brokers" in s.instruction and "bread" not in s.instruction
               for s in plan.steps)
    assert "in detail" not in plan.steps[0].instruction  # a plan quotes the task's first line
    assert step.content == "[simulated] result of: list three brokers"
    assert step.sources == ["m1", "m2", "m3"]
    assert sim.hints[1] == ModelHint(output="StepOutput", task="compare brokers",
                                     instruction="list three brokers",
                                     memory=("m1", "m2", "m3", "m4"))


@pytest.mark.anyio
async def test_a_request_without_a_hint_gets_a_value_of_its_schema(
    sim: SimulatedModel, client: openai.AsyncOpenAI
) -> None:
    reply = await client.chat.completions.create(
        model=SIMULATED_MODEL_NAME,
        messages=[{"role": "user", "content": "Task: compare NATS and Kafka"}],
        response_format=_schema_format(Plan),
    )
    plan = msgspec.json.decode(reply.choices[0].message.content, type=Plan)
    assert not any("NATS" in s.instruction for s in plan.steps)
    assert sim.hints == [None]


@pytest.mark.anyio
async def test_a_hint_that_does_not_parse_is_refused_with_a_400(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError, match="X-Crewbus-Hint"):
        await client.chat.completions.create(
            model=SIMULATED_MODEL_NAME,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={HINT_HEADER: '{"memory": "not a list"}'},
        )


@pytest.mark.anyio
async def test_a_long_non_ascii_task_fits_in_the_hint_header(client: openai.AsyncOpenAI) -> None:
    task = "Compare brokers in Zürich ✓\n" + "Überlegungen zu Warteschlangen. " * 2000
    reply = await _ask(client, "Task: see the hint", Plan, task=task)
    plan = msgspec.json.decode(reply.choices[0].message.content, type=Plan)
    assert plan.steps[0].instruction == "Gather the key facts for: Compare brokers in Zürich ✓"
