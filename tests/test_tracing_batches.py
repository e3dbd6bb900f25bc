"""Span batches on a real nats-server: the spans of one piece of work are one message on the
bus, read back with single spans (older writers) and each span id kept once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimulatedModel
from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing import (
    SpanDraft,
    Tracer,
    TraceSettings,
    ensure_trace_stream,
    read_trace,
    task_context,
)
from crewbus_contracts import SubmitTask, TaskCompleted, subjects
from crewbus_contracts.subjects import TRACES_STREAM
from crewbus_contracts.traces import Span, SpanBatch
from tests.stack import final_event, in_process_stack

pytestmark = pytest.mark.anyio

_record = msgspec.json.Decoder(Span | SpanBatch)


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_trace_stream(js, TraceSettings())
    try:
        yield nc, js
    finally:
        await nc.close()


async def stored_raw(js: JetStreamContext, task_id: str) -> list[bytes]:
    """Every message stored on the task's trace subject, as stored."""
    out: list[bytes] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(TRACES_STREAM, seq=seq, subject=subjects.traces(task_id),
                                   next=True)
        except NotFoundError:
            return out
        assert msg.seq is not None
        seq = msg.seq + 1
        out.append(msg.data or b"")


async def stored_messages(js: JetStreamContext, task_id: str) -> list[tuple[int, Span | SpanBatch]]:
    """Every message stored on the task's trace subject: its size and what it holds."""
    return [(len(data), _record.decode(data)) for data in await stored_raw(js, task_id)]


async def messages_once_stored(
    js: JetStreamContext, task_id: str, spans: int
) -> list[tuple[int, Span | SpanBatch]]:
    """The task's messages once they hold `spans` spans (writes are not acked)."""
    with anyio.fail_after(60):
        while True:
            found = await stored_messages(js, task_id)
            if sum(len(_spans_of(r)) for _, r in found) >= spans:
                return found
            await anyio.sleep(0.02)


def _spans_of(record: Span | SpanBatch) -> list[Span]:
    return record.spans if isinstance(record, SpanBatch) else [record]


def draft(task_id: str, n: int, size: int = 0) -> SpanDraft:
    """A span with fixed ids (so writing it again is a re-publish), `size` chars of input."""
    own = TraceContext(trace_id=task_context(task_id).trace_id, span_id=f"{n:016x}")
    return SpanDraft(name=f"execute_tool t{n}", kind="tool", task_id=task_id, context=own,
                     parent_span_id=None, start=float(n), end=n + 0.5,
                     input="x" * size if size else None)


async def test_the_spans_of_one_batch_are_one_message_per_task(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "executor")

    async def child(n: int) -> None:  # a task started inside the work sees its batch
        await tracer.write(draft("t-a", n))

    async with tracer.batch():
        async with tracer.span("invoke_agent executor", "agent", parent=None, task_id="t-a"):
            await tracer.write(draft("t-a", 1))
            async with tracer.batch():  # a nested batch joins the outer one
                await tracer.write(draft("t-a", 2))
            async with anyio.create_task_group() as tg:
                tg.start_soon(child, 3)
                tg.start_soon(child, 4)
        await tracer.write(draft("t-b", 5))
        await tracer.write(draft("t-b", 6))
        assert await stored_messages(js, "t-a") == []  # held until the batch ends

    (_, only), = await messages_once_stored(js, "t-a", 5)
    assert isinstance(only, SpanBatch)
    assert [s.name for s in only.spans][-1] == "invoke_agent executor"  # in the order ended
    assert {s.span_id for s in only.spans} >= {f"{n:016x}" for n in (1, 2, 3, 4)}
    (_, other), = await messages_once_stored(js, "t-b", 2)
    assert isinstance(other, SpanBatch) and len(other.spans) == 2
    assert [s.span_id for s in await read_trace(js, "t-a")] == [s.span_id for s in only.spans]
    assert tracer.written == 7 and tracer.dropped == 0

    # The same spans again make the same message id: stored once.
    async with tracer.batch():
        await tracer.write(draft("t-b", 5))
        await tracer.write(draft("t-b", 6))
    async with tracer.batch():  # a batch of one is a plain span, as an older writer's
        await tracer.write(draft("t-c", 7))
    (_, lone), = await messages_once_stored(js, "t-c", 1)
    assert isinstance(lone, Span)
    assert len(await stored_messages(js, "t-b")) == 1

    # Outside a batch, every span is its own message, as before.
    await tracer.write(draft("t-d", 8))
    await tracer.write(draft("t-d", 9))
    found = await messages_once_stored(js, "t-d", 2)
    assert [type(r) for _, r in found] == [Span, Span]


async def test_single_spans_and_batches_read_back_together_each_span_once(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = bus
    tracer = Tracer(js, "executor")
    await tracer.write(draft("t-mix", 1))  # an older writer's single span
    async with tracer.batch():
        for n in (1, 2, 3):  # 1 again: the batch holds a span already stored alone
            await tracer.write(draft("t-mix", n))
    await nc.publish(subjects.traces("t-mix"), b"not a span")  # skipped, with a warning
    await tracer.write(draft("t-mix", 3))  # stored again (another id): read once
    async with tracer.batch():
        await tracer.write(draft("t-mix", 4))
        await tracer.write(draft("t-mix", 5))
    with anyio.fail_after(60):
        while len(await stored_raw(js, "t-mix")) < 5:
            await anyio.sleep(0.02)

    spans = await read_trace(js, "t-mix")
    assert [s.span_id for s in spans] == [f"{n:016x}" for n in (1, 2, 3, 4, 5)]
    # The bound counts spans, not messages: it may stop inside a batch.
    assert [s.span_id for s in await read_trace(js, "t-mix", max_spans=4)] == [
        f"{n:016x}" for n in (1, 2, 3, 4)]
    assert len(await read_trace(js, "t-mix", max_spans=1)) == 1


async def test_a_batch_bigger_than_the_limit_is_split_into_messages_that_fit(
    tmp_path: Path,
) -> None:
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 16384\n")
    server = NatsServer(tmp_path / "nats", config_file=config).start()
    nc = await nats.connect(server.url)
    try:
        assert nc.max_payload == 16384
        js = nc.jetstream()
        await ensure_trace_stream(js, TraceSettings())
        tracer = Tracer(js, "executor")
        async with tracer.batch():
            for n in range(1, 13):  # about 3 kB each: 36 kB in all
                await tracer.write(draft("t-big", n, size=3000))
        found = await messages_once_stored(js, "t-big", 12)
        assert len(found) >= 3
        assert all(size <= 16384 for size, _ in found)
        assert tracer.written == 12 and tracer.dropped == 0
        spans = await read_trace(js, "t-big")
        assert [s.span_id for s in spans] == [f"{n:016x}" for n in range(1, 13)]

        # The setting bounds a batch too, below the server's max payload.
        small = Tracer(js, "executor", settings=TraceSettings(max_batch_bytes=8192))
        async with small.batch():
            for n in range(1, 7):
                await small.write(draft("t-set", n, size=3000))
        found = await messages_once_stored(js, "t-set", 6)
        assert len(found) >= 3 and all(size <= 8192 for size, _ in found)
    finally:
        await nc.close()
        server.stop()


async def test_spans_finished_before_a_cancel_are_still_written(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "executor")
    with anyio.CancelScope() as scope:
        async with tracer.batch():
            await tracer.write(draft("t-cancel", 1))
            async with tracer.span("invoke_agent executor", "agent", parent=None,
                                   task_id="t-cancel"):
                scope.cancel()
                await anyio.sleep(30)
    assert scope.cancelled_caught
    (_, batch), = await messages_once_stored(js, "t-cancel", 2)
    assert isinstance(batch, SpanBatch)
    assert [s.error for s in batch.spans] == [None, "cancelled"]


async def test_a_batch_that_cannot_be_written_is_dropped_and_the_work_goes_on(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()  # no trace stream: a confirmed publish fails
    tracer = Tracer(js, "test", settings=TraceSettings(confirm_writes=True, publish_timeout_s=0.5))
    async with tracer.batch():
        for n in (1, 2, 3):
            await tracer.write(draft("t-lost", n))
    assert tracer.dropped == 3 and tracer.written == 0
    await nc.close()


async def test_confirmed_writes_store_a_batch_with_one_acked_publish(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "test", settings=TraceSettings(confirm_writes=True))
    async with tracer.batch():
        for n in (1, 2, 3):
            await tracer.write(draft("t-ack", n))
    # Acked: stored when the batch ends, no waiting.
    info = await js.stream_info(TRACES_STREAM, subjects_filter=subjects.traces("t-ack"))
    assert info.state.subjects == {subjects.traces("t-ack"): 1}
    assert len(await read_trace(js, "t-ack")) == 3


async def test_batching_off_writes_one_message_per_span(
    bus: tuple[NATS, JetStreamContext],
) -> None:
    _, js = bus
    tracer = Tracer(js, "test", settings=TraceSettings(batch_writes=False))
    async with tracer.batch():
        for n in (1, 2, 3):
            await tracer.write(draft("t-off", n))
    found = await messages_once_stored(js, "t-off", 3)
    assert [type(r) for _, r in found] == [Span, Span, Span]


async def test_each_piece_of_agent_work_is_one_trace_message(nats_server: NatsServer) -> None:
    sim = SimulatedModel()
    url = await sim.start()
    try:
        async with in_process_stack(nats_server.url, url) as client:
            accepted = await client.submit(SubmitTask(text="Compare NATS and Kafka briefly."))
            done = await final_event(client, accepted.task_id)
            assert isinstance(done, TaskCompleted), done
            # The orchestrator writes its spans right after the final event.
            with anyio.fail_after(60):
                while not any(s.kind == "task" for s in await read_trace(client.js,
                                                                         accepted.task_id)):
                    await anyio.sleep(0.05)
            found = await stored_messages(client.js, accepted.task_id)
    finally:
        await sim.stop()

    records = [r for _, r in found]
    spans = [s for r in records for s in _spans_of(r)]
    agents = [s for s in spans if s.kind == "agent"]
    assert len(agents) >= 4  # planner, researchers, executors, critic
    # One message per piece of work, holding its agent span and everything under it, and
    # one for the orchestrator's round and task spans.
    assert len(records) == len(agents) + 1
    for record in records:
        held = _spans_of(record)
        kinds = [s.kind for s in held]
        if "task" in kinds:
            assert set(kinds) == {"task", "round"}
            continue
        (agent,) = [s for s in held if s.kind == "agent"]
        assert kinds[-1] == "agent"  # it ends last, after its model calls
        assert all(s.parent_span_id == agent.span_id for s in held if s is not agent)
    assert len(spans) > len(records)  # fewer messages than spans: the point
