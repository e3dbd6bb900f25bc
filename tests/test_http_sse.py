"""The task event stream over SSE: every event from the start, ids that are stream
sequences, and a resume with Last-Event-ID that continues exactly where the client
stopped (no gap, no duplicate), after the task ended and while it still runs."""

from __future__ import annotations

import json

import anyio
import pytest

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus_contracts import subjects
from tests.gateway_helpers import HttpStack, http_stack, read_sse

pytestmark = pytest.mark.anyio


async def stored_sequences(client: CrewbusClient, task_id: str) -> list[tuple[int, str]]:
    """The task's events as the stream keeps them: (sequence, kind), read from NATS alone."""
    out: list[tuple[int, str]] = []
    seq = 1
    while True:
        try:
            msg = await client.js.get_msg(subjects.EVENTS_STREAM, seq=seq,
                                          subject=subjects.events(task_id), next=True)
        except Exception:
            return out
        assert msg.seq is not None and msg.subject is not None
        out.append((msg.seq, msg.subject.rsplit(".", 1)[1]))
        seq = msg.seq + 1


def as_pairs(events: list) -> list[tuple[int, str]]:  # type: ignore[type-arg]
    return [(int(e.id), e.event) for e in events]


async def submit(s: HttpStack, text: str) -> str:
    response = await s.http.post("/v1/tasks", json={"text": text})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_the_stream_sends_every_event_with_its_sequence_and_ends_after_the_last(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        task_id = await submit(s, "Stream me")
        read = await read_sse(s.http, f"/v1/tasks/{task_id}/events")
        stored = await stored_sequences(s.client, task_id)
        again = await read_sse(s.http, f"/v1/tasks/{task_id}/events")
    assert as_pairs(read.events) == stored == as_pairs(again.events)
    assert stored[0][1] == "task_submitted" and stored[-1][1] == "task_completed"
    for event in read.events:
        body = json.loads(event.data)
        assert body["type"] == event.event and body["task_id"] == task_id


@pytest.mark.parametrize("k", [1, 4, 9])
async def test_a_resume_after_k_events_of_a_finished_task_gives_exactly_the_rest(
    nats_server: NatsServer, model: SimulatedModel, k: int
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        task_id = await submit(s, f"Resume after {k}")
        whole = await read_sse(s.http, f"/v1/tasks/{task_id}/events")
        first = await read_sse(s.http, f"/v1/tasks/{task_id}/events", max_events=k)
        rest = await read_sse(s.http, f"/v1/tasks/{task_id}/events",
                              headers={"Last-Event-ID": first.events[-1].id or ""})
        after_the_end = await read_sse(s.http, f"/v1/tasks/{task_id}/events",
                                       headers={"Last-Event-ID": whole.events[-1].id or ""})
    assert len(first.events) == k
    assert as_pairs(first.events) + as_pairs(rest.events) == as_pairs(whole.events)
    assert after_the_end.status == 204


async def test_a_resume_while_the_task_runs_misses_nothing_and_repeats_nothing(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    # Each research step takes a while, so the client drops and comes back mid-task.
    model.script("researcher", SimReply(delay_s=0.6), SimReply(delay_s=0.6))
    async with http_stack(nats_server.url, model.base_url) as s:
        task_id = await submit(s, "Resume while running")
        first = await read_sse(s.http, f"/v1/tasks/{task_id}/events", max_events=3)
        state = await s.client.state(task_id)
        assert state is not None and not state.is_final, "the task ended before the drop"
        pieces = [first]
        with anyio.fail_after(60):
            while pieces[-1].events[-1].event != "task_completed":
                await anyio.sleep(0.2)  # away for a moment: events arrive meanwhile
                pieces.append(await read_sse(
                    s.http, f"/v1/tasks/{task_id}/events", max_events=2,
                    headers={"Last-Event-ID": pieces[-1].events[-1].id or ""}))
        stored = await stored_sequences(s.client, task_id)
    union = [pair for piece in pieces for pair in as_pairs(piece.events)]
    assert union == stored
    assert len(pieces) >= 3


async def test_an_idle_stream_sends_heartbeat_comments(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    model.script("researcher", SimReply(delay_s=2.0))
    async with http_stack(nats_server.url, model.base_url,
                          gateway={"sse_heartbeat_s": 0.2}) as s:
        task_id = await submit(s, "Quiet for a while")
        read = await read_sse(s.http, f"/v1/tasks/{task_id}/events")
    assert read.comments.count("heartbeat") >= 3
    assert read.events[-1].event == "task_completed"
