"""Traces on a real nats-server: written by Tracer, read back as a tree, rendered, redacted."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.adapter import LLMClient
from crewbus.llm.settings import LLMSettings
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing import (
    ChatSpanObserver,
    SpanDraft,
    SpanPlace,
    Tracer,
    TraceSettings,
    build_tree,
    context_from_headers,
    ensure_trace_stream,
    load_trace_settings,
    read_trace,
    render_tree,
    round_context,
    start_tracer,
    task_context,
    task_trace_id,
    to_json,
    walk,
    write_approval,
    write_memory_search,
    write_tool_call,
)
from crewbus.tracing.cli import trace_command
from crewbus_agents.tools.context import ToolOutcome
from crewbus_agents.tools.memory import MemoryHit
from crewbus_agents.tools.redact import REDACTED, Redactor
from crewbus_contracts import Plan
from crewbus_contracts.traces import Span

pytestmark = pytest.mark.anyio


async def stored_spans(js: JetStreamContext, task_id: str, count: int) -> list[Span]:
    """The task's spans once `count` of them are stored: spans are published without
    waiting for acks, so the stream may lag a moment behind the writer on a busy machine."""
    with anyio.fail_after(60):
        while len(spans := await read_trace(js, task_id)) < count:
            await anyio.sleep(0.02)
    return spans

FAKE_KEY = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_trace_stream(js, TraceSettings())
    try:
        yield nc, js
    finally:
        await nc.close()


async def _write_task_trace(tracer: Tracer, task_id: str) -> None:
    """task → round 1 → (planner, executor step s1 → chat + execute_tool + memory)."""
    async with (
        tracer.span(
            f"task {task_id}", "task", parent=None, task_id=task_id, context=task_context(task_id)
        ) as task,
        tracer.span(
            "round 1",
            "round",
            parent=task.context,
            task_id=task_id,
            round=1,
            context=round_context(task_id, 1),
        ) as round_,
    ):
        async with tracer.span(
            "invoke_agent planner", "agent", parent=round_.context, task_id=task_id, round=1
        ):
            pass
        async with tracer.span(
            "invoke_agent executor",
            "agent",
            parent=round_.context,
            task_id=task_id,
            round=1,
            step_id="s1",
            attributes={"gen_ai.agent.name": "executor"},
        ) as agent:
            async with tracer.span(
                "execute_tool python",
                "tool",
                parent=agent.context,
                task_id=task_id,
                round=1,
                step_id="s1",
                attributes={"gen_ai.tool.name": "python"},
            ) as tool:
                tool.set_input({"code": "print(1 + 1)"})
                tool.set_output("2\n")
            with pytest.raises(RuntimeError):
                async with tracer.span(
                    "memory_search", "memory", parent=agent.context, task_id=task_id
                ) as memory:
                    memory.set_input("nats vs kafka")
                    memory.set_output({"hits": [{"id": "m-1", "score": 0.91, "text": "x"}]})
                    raise RuntimeError("memory service down")


async def test_spans_are_read_back_as_a_tree_with_parents_and_order(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "test")
    await _write_task_trace(tracer, "t-tree")
    await _write_task_trace(tracer, "t-other")  # another task's spans stay out

    spans = await stored_spans(js, "t-tree", 6)
    assert len(spans) == 6
    assert {s.task_id for s in spans} == {"t-tree"}
    assert {s.trace_id for s in spans} == {task_trace_id("t-tree")}
    roots = build_tree(spans)
    assert [r.span.name for r in roots] == ["task t-tree"]
    (round_,) = roots[0].children
    assert round_.span.name == "round 1" and round_.span.round == 1
    assert [c.span.name for c in round_.children] == [
        "invoke_agent planner",
        "invoke_agent executor",
    ]
    executor = round_.children[1]
    assert [c.span.name for c in executor.children] == ["execute_tool python", "memory_search"]
    tool, memory = executor.children
    assert tool.span.parent_span_id == executor.span.span_id
    assert tool.span.input == {"code": "print(1 + 1)"} and tool.span.output == "2\n"
    assert memory.span.status == "error"
    assert memory.span.error == "RuntimeError: memory service down"
    assert [s.name for s in walk(roots)][:3] == ["task t-tree", "round 1", "invoke_agent planner"]


async def test_orphans_and_cycles_are_kept_at_the_root() -> None:
    def span(span_id: str, parent: str | None, start: float) -> Span:
        return Span(
            trace_id="a" * 32,
            span_id=span_id,
            parent_span_id=parent,
            name=span_id,
            kind="agent",
            task_id="t",
            service="test",
            start=start,
            end=start + 1,
        )

    spans = [span("b", "lost", 2), span("a", None, 1), span("c", "d", 3), span("d", "c", 4)]
    roots = build_tree(spans)
    assert [r.span.span_id for r in roots] == ["a", "b", "c"]
    assert len(walk(roots)) == 4


async def test_secrets_and_configured_patterns_are_redacted(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    redactor = Redactor(patterns=[r"ACME-\d{6}"], env={})
    tracer = Tracer(js, "executor", redactor)
    async with tracer.span(
        "execute_tool http_get",
        "tool",
        parent=None,
        task_id="t-redact",
        attributes={"crewbus.note": "customer ACME-123456"},
    ) as span:
        span.set_input({"url": "https://example.com", "headers": {"api_key": "hunter2-secret"}})
        span.set_output(f"used key {FAKE_KEY} for account ACME-654321")
        span.set_error(f"Bearer {FAKE_KEY} rejected")
    (stored,) = await stored_spans(js, "t-redact", 1)
    raw = msgspec.json.encode(stored).decode()
    assert FAKE_KEY not in raw and "ACME-" not in raw and "hunter2" not in raw
    assert stored.output == f"used key {REDACTED} for account {REDACTED}"
    assert stored.input["headers"]["api_key"] == REDACTED
    assert stored.attributes["crewbus.note"] == f"customer {REDACTED}"
    assert stored.error is not None and REDACTED in stored.error


async def test_huge_payloads_are_clipped_and_a_span_is_written_once(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "test", settings=TraceSettings(max_payload_chars=1000))
    written = await tracer.write(SpanDraft(
        name="execute_tool python",
        kind="tool",
        task_id="t-big",
        context=task_context("t-big").child(),
        parent_span_id=None,
        start=1.0,
        end=2.0,
        output="x" * 50_000,
    ))
    assert written is not None
    await tracer.write(SpanDraft(  # the same span again: deduplicated by its Nats-Msg-Id
        name="execute_tool python",
        kind="tool",
        task_id="t-big",
        context=TraceContext(written.trace_id, written.span_id),
        parent_span_id=None,
        start=1.0,
        end=2.0,
        output="again",
    ))
    (stored,) = await stored_spans(js, "t-big", 1)
    assert stored.output.startswith("x" * 1000) and "truncated 49000 chars" in stored.output


async def test_traceparent_travels_in_nats_headers_and_the_receiver_continues_the_trace(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = bus
    sender = Tracer(js, "orchestrator")
    receiver = Tracer(js, "executor")
    sub = await nc.subscribe("test.work")
    async with sender.span("round 1", "round", parent=None, task_id="t-hdr", round=1) as sent:
        await nc.publish("test.work", b"{}", headers=sent.headers({"x-other": "kept"}))
        msg = await sub.next_msg(timeout=5)
    assert msg.headers is not None and msg.headers["x-other"] == "kept"
    incoming = context_from_headers(msg.headers)
    assert incoming is not None
    assert incoming.trace_id == sent.trace_id and incoming.span_id == sent.span_id
    async with receiver.span(
        "invoke_agent executor", "agent", parent=incoming, task_id="t-hdr", step_id="s1"
    ) as work:
        assert work.trace_id == sent.trace_id
        assert work.parent_span_id == sent.span_id
    spans = {s.service: s for s in await stored_spans(js, "t-hdr", 2)}
    assert spans["executor"].trace_id == spans["orchestrator"].trace_id
    assert spans["executor"].parent_span_id == spans["orchestrator"].span_id
    assert context_from_headers({"traceparent": "garbage"}) is None
    assert context_from_headers(None) is None


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedModel]:
    async with SimulatedModel() as model:
        yield model


def _llm(sim: SimulatedModel, role: str) -> LLMClient:
    assert sim.base_url is not None
    return LLMClient(LLMSettings(base_url=sim.base_url, max_transport_retries=0), role)


async def test_the_adapter_observer_writes_a_chat_span_for_every_turn(
    bus: tuple[NATS, JetStreamContext], sim: SimulatedModel
) -> None:
    _, js = bus
    tracer = Tracer(js, "planner")
    sim.script("planner", SimReply(content='{"steps": "not a list"}'))  # then the default
    async with tracer.span(
        "invoke_agent planner", "agent", parent=None, task_id="t-llm", round=1
    ) as agent:
        observer = ChatSpanObserver(tracer, SpanPlace("t-llm", agent.context, 1), "planner@v2")
        async with _llm(sim, "planner") as llm:
            completion = await llm.structured(
                "You plan.", "Task: compare brokers", Plan, trace=observer
            )
    assert completion.validation_retries == 1

    spans = await stored_spans(js, "t-llm", tracer.written)
    chats = sorted((s for s in spans if s.kind == "chat"), key=lambda s: s.start)
    assert len(chats) == 2
    first, second = chats
    for chat in chats:
        assert chat.name == f"chat {llm.settings.model}"
        assert chat.parent_span_id == agent.span_id
        assert chat.attributes["crewbus.prompt_version"] == "planner@v2"
        assert chat.attributes["gen_ai.agent.name"] == "planner"
        assert isinstance(chat.attributes["gen_ai.usage.input_tokens"], int)
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.end >= chat.start
    assert first.status == "error" and first.attributes["error.type"] == "validation"
    assert first.output["content"] == '{"steps": "not a list"}'
    assert first.output["validation_error"]
    assert [m["role"] for m in first.input["messages"]] == ["system", "user"]
    assert second.status == "ok" and second.attributes["crewbus.attempt"] == 1
    assert [m["role"] for m in second.input["messages"]] == ["system", "user", "assistant", "user"]
    assert json.loads(second.output["content"])["steps"]


async def test_the_observer_records_tool_calls_and_failed_calls(
    bus: tuple[NATS, JetStreamContext], sim: SimulatedModel
) -> None:
    _, js = bus
    tracer = Tracer(js, "executor")
    observer = ChatSpanObserver(tracer, SpanPlace("t-chat", None, 1, "s1"), "executor@v1")
    sim.script(
        "executor",
        SimReply(tool_calls=[("calculator", '{"expression": "2+2"}')]),
        SimReply(status=400, content="bad request"),
    )
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {}}}]
    messages = [{"role": "user", "content": "what is 2+2?"}]
    async with _llm(sim, "executor") as llm:
        result = await llm.chat(messages, tools, trace=observer)
        assert result.tool_calls[0].name == "calculator"
        with pytest.raises(Exception, match="400"):
            await llm.chat(messages, tools, trace=observer)
    ok, failed = sorted(await stored_spans(js, "t-chat", tracer.written), key=lambda s: s.start)
    assert ok.output["tool_calls"][0]["name"] == "calculator"
    assert ok.input["tools"] == ["calculator"]
    assert failed.status == "error" and failed.output is None
    assert failed.attributes["error.type"] == "400"

    text = render_tree(build_tree([ok, failed]))
    assert "tool calls requested:" in text and 'calculator({"expression": "2+2"})' in text


async def test_render_tree_and_json_export_show_everything(
    bus: tuple[NATS, JetStreamContext],
    sim: SimulatedModel,
    capsys: pytest.CaptureFixture[str],
    nats_server: NatsServer,
) -> None:
    _, js = bus
    tracer = Tracer(js, "executor")
    await _write_task_trace(tracer, "t-show")
    sim.script("executor", SimReply(tool_calls=[("python", '{"code": "print(6*7)"}')]))
    async with tracer.span(
        "invoke_agent executor",
        "agent",
        parent=round_context("t-show", 1),
        task_id="t-show",
        round=1,
        step_id="s2",
    ) as agent:
        place = SpanPlace("t-show", agent.context, 1, "s2")
        observer = ChatSpanObserver(tracer, place, "executor@v3")
        async with _llm(sim, "executor") as llm:
            await llm.chat(
                [
                    {"role": "system", "content": "You execute."},
                    {"role": "user", "content": "Compute six times seven"},
                ],
                [{"type": "function", "function": {"name": "python", "parameters": {}}}],
                trace=observer,
            )
    spans = await stored_spans(js, "t-show", tracer.written)
    text = render_tree(build_tree(spans))
    if os.environ.get("CREWBUS_TRACE_SAMPLE_OUT"):  # to look at the rendering by eye
        Path(os.environ["CREWBUS_TRACE_SAMPLE_OUT"]).write_text(text)
    assert text.splitlines()[0].startswith("task t-show")
    assert "chat crewbus-simulated" in text and "model crewbus-simulated" in text
    assert "prompt executor@v3" in text
    assert "tokens " in text and " in / " in text
    assert "[system]" in text and "You execute." in text and "Compute six times seven" in text
    assert "tool calls requested:" in text and "python(" in text
    assert "execute_tool python" in text and "print(1 + 1)" in text
    assert "memory_search" in text and "m-1  score 0.910" in text
    assert "memory service down" in text

    exported = json.loads(to_json(spans))
    assert exported["task_id"] == "t-show"
    assert {s["span_id"] for s in exported["spans"]} == {s.span_id for s in spans}
    assert all(s["type"] == "span" for s in exported["spans"])
    chat = next(s for s in exported["spans"] if s["kind"] == "chat")
    assert chat["input"]["messages"][1]["content"] == "Compute six times seven"

    capsys.readouterr()
    assert await trace_command(nats_server.url, "t-show", as_json=True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["span_count"] == len(spans)
    assert await trace_command(nats_server.url, "t-show", as_json=False) == 0
    assert "invoke_agent executor" in capsys.readouterr().out
    assert await trace_command(nats_server.url, "t-none", as_json=False) == 1


async def test_the_stream_is_created_idempotently_with_the_retention_from_settings(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    await ensure_trace_stream(js, TraceSettings(retention_s=3600))
    await ensure_trace_stream(js, TraceSettings(retention_s=3600))
    info = await js.stream_info("CREWBUS_TRACES")
    assert info.config.max_age == 3600
    assert info.config.subjects == ["crewbus.traces.*"]


async def test_a_tracer_without_a_bus_never_breaks_the_work(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()  # no trace stream: publishing fails
    tracer = Tracer(js, "test", settings=TraceSettings(confirm_writes=True, publish_timeout_s=0.5))
    async with tracer.span("execute_tool python", "tool", parent=None, task_id="t-x") as span:
        span.set_output("fine")
    assert tracer.dropped == 1
    await nc.close()


async def test_start_tracer_creates_the_stream_and_redacts_configured_patterns(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    env = {"CREWBUS_TRACE_REDACT_PATTERNS": '["ticket-\\\\d+"]', "CREWBUS_TRACE_RETENTION_S": "60"}
    settings = load_trace_settings(env)
    assert settings.redact_patterns == ["ticket-\\d+"] and settings.retention_s == 60
    tracer = await start_tracer(js, "memory", settings, extra_patterns=[r"case-\d+"])
    async with tracer.span("memory_search", "memory", parent=None, task_id="t-setup") as span:
        span.set_input("ticket-42 and case-7")
    (stored,) = await stored_spans(js, "t-setup", 1)
    assert stored.input == f"{REDACTED} and {REDACTED}"
    assert (await js.stream_info("CREWBUS_TRACES")).config.max_age == 60
    await nc.close()


async def test_tool_memory_and_approval_records_render_with_their_details(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "executor", Redactor(env={}))
    parent = round_context("t-rec", 1)
    step = SpanPlace("t-rec", parent, round=1, step_id="s1")
    ok = ToolOutcome(tool="python", output="42\n", duration_s=0.25)
    failed = ToolOutcome(
        tool="read_file",
        status="error",
        error="path escapes the workspace",
        error_type="PathOutsideWorkspace",
        duration_s=0.01,
    )
    await write_tool_call(
        tracer,
        step,
        tool="python",
        call_id="c1",
        arguments='{"code": "print(6*7)"}',
        outcome=ok,
    )
    await write_tool_call(
        tracer,
        step,
        tool="read_file",
        call_id="c2",
        arguments='{"path": "../../etc/passwd"}',
        outcome=failed,
    )
    hits = [
        MemoryHit(id="m-7", score=0.8123, text="NATS is small"),
        MemoryHit(id="m-9", score=0.5, text=""),
    ]
    await write_memory_search(
        tracer, SpanPlace("t-rec", parent), query="small brokers", hits=hits,
        start=time.time() - 0.1,
    )
    await write_approval(
        tracer,
        SpanPlace("t-rec", parent),
        tool="write_file",
        arguments='{"path": "a.txt"}',
        decision="denied",
        requested_at=time.time() - 5,
        by="alice",
        reason="not today",
    )
    spans = await stored_spans(js, "t-rec", tracer.written)
    by_name = {s.name: s for s in spans}
    tool = by_name["execute_tool python"]
    assert tool.input == {"code": "print(6*7)"} and tool.output == "42\n"
    assert tool.attributes["gen_ai.tool.call.id"] == "c1"
    assert 0.2 < tool.duration_s < 0.3
    bad = by_name["execute_tool read_file"]
    assert bad.status == "error" and bad.attributes["error.type"] == "PathOutsideWorkspace"
    memory = by_name["memory_search"]
    assert memory.output["hits"][0] == {
        "id": "m-7",
        "score": 0.8123,
        "text": "NATS is small",
        "source": "",
    }
    approval = by_name["approval write_file"]
    assert approval.attributes["crewbus.approval.decision"] == "denied"
    assert "crewbus.approval.by" in approval.attributes and approval.status == "ok"

    text = render_tree(build_tree(spans))
    for needle in (
        'arguments: {"code": "print(6*7)"}',
        "result: 42",
        "error: path escapes the workspace",
        "query: small brokers",
        "m-7  score 0.812  NATS is small",
        "m-9  score 0.500",
        "2 hits",
        "decision: denied",
        "by: alice",
        "reason: not today",
    ):
        assert needle in text, needle


async def test_a_cancelled_span_is_still_written_as_cancelled(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "executor")
    with anyio.move_on_after(0.05):
        async with tracer.span("execute_tool python", "tool", parent=None, task_id="t-cancel"):
            await anyio.sleep(5)
    (stored,) = await stored_spans(js, "t-cancel", 1)
    assert stored.status == "error" and stored.error == "cancelled"
