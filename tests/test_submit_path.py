"""The submit path: bad input gets a clear error and the next good task still runs;
the same idempotency key is the same task; a client with only the JSON Schema can submit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from prometheus_client import REGISTRY

from crewbus.devstack.nats_server import NatsServer
from crewbus_contracts import SubmitTask, TaskCompleted
from tests.stack import final_event, in_process_stack

pytestmark = pytest.mark.anyio




def bad_input_count(reason: str) -> float:
    labels = {"reason": reason, "subject_kind": "submit"}
    return REGISTRY.get_sample_value("crewbus_bad_input_total", labels) or 0.0


BAD_SUBMISSIONS = [
    (b'{"type": "submit_task", "text": ', "malformed_json", "truncated", None),
    (b'{"type": "submit_task", "text": "hi", "schema_version": 99}',
     "unsupported_schema_version", "schema_version 99", None),
    (b'{"type": "submit_task", "text": "   "}', "invalid_message", "blank", None),
    (b'{"type": "submit_task", "text": "hi", "colour": "red"}', "invalid_message",
     "unknown field `$.colour`", "unknown_field"),
    (b'{"type": "submit_task", "text": "hi", "limits": {"max_cost": 0.5}}', "invalid_message",
     "unknown field `$.limits.max_cost`", "unknown_field"),
    (b'{"type": "submit_task", "text": "' + b"x" * 70_000 + b'"}', "payload_too_large", "limit",
     None),
    (b'{"type": "submit_task", "text": "hi", "limits": {"max_rounds": 0}}', "invalid_message",
     "$.limits.max_rounds", None),
    (b'{"type": "submit_tasks", "text": "hi"}', "invalid_message",
     "it accepts submit_task", "unknown_type"),
]
"""Payload, reply code, what the message says, and the metric's reason (when not the code)."""


async def test_bad_submissions_get_clear_errors_and_the_next_good_task_runs(
    nats_server: NatsServer, model_url: str
) -> None:
    async with in_process_stack(nats_server.url, model_url) as client:
        for payload, code, detail, reason in BAD_SUBMISSIONS:
            before = bad_input_count(reason or code)
            reply = await client.nc.request("crewbus.submit", payload, timeout=30)
            body = json.loads(reply.data)
            assert body["type"] == "error_reply", body
            assert body["code"] == code, body
            assert detail in body["message"], body
            assert bad_input_count(reason or code) == before + 1
        accepted = await client.submit(SubmitTask(text="A good task after the bad ones"))
        assert isinstance(await final_event(client, accepted.task_id), TaskCompleted)


async def test_the_same_idempotency_key_maps_to_one_task(
    nats_server: NatsServer, model_url: str
) -> None:
    async with in_process_stack(nats_server.url, model_url) as client:
        first = await client.submit(SubmitTask(text="Once", idempotency_key="order-42"))
        second = await client.submit(SubmitTask(text="Once", idempotency_key="order-42"))
        assert first.task_id == second.task_id
        assert second.duplicate is True
        await final_event(client, first.task_id)
        third = await client.submit(SubmitTask(text="Once", idempotency_key="order-42"))
        assert third.task_id == first.task_id and third.duplicate
        state = await client.state(first.task_id)
        kinds = [type(e).__name__ async for e in client.events(first.task_id)]
    assert state is not None and len(state.rounds) == 1
    assert kinds.count("TaskSubmitted") == 1 and kinds.count("TaskPlanned") == 1


async def test_a_plain_nats_client_submits_from_the_schema_alone(
    nats_server: NatsServer, model_url: str, tmp_path: Path
) -> None:
    """Nothing from crewbus is used on the client side: raw nats-py and hand-written JSON,
    checked against the schema `crewbus schema` exports."""
    exported = subprocess.run(
        [sys.executable, "-m", "crewbus", "schema", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    assert "submit_task.schema.json" in exported.stdout
    schema = json.loads((tmp_path / "submit_task.schema.json").read_text())
    submit_def = schema["$defs"]["SubmitTask"]
    limits_def = schema["$defs"]["TaskLimits"]
    assert submit_def["properties"]["type"] == {"enum": ["submit_task"]}
    assert set(submit_def["required"]) == {"type", "text"}
    assert {"max_rounds", "deadline_seconds"} <= set(limits_def["properties"])
    assert submit_def["additionalProperties"] is False  # the gateway refuses unknown fields
    events = (tmp_path / "task_event.schema.json").read_text()
    assert '"additionalProperties": false' not in events  # readers must ignore new fields
    async with in_process_stack(nats_server.url, model_url):
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        submission = {
            "type": "submit_task",
            "schema_version": 1,
            "text": "Summarise why JetStream suits agent work queues",
            "limits": {"max_rounds": 2, "deadline_seconds": 60},
        }
        reply = json.loads((await nc.request("crewbus.submit", json.dumps(submission).encode(),
                                             timeout=30)).data)
        assert reply["type"] == "task_accepted"
        task_id = reply["task_id"]
        sub = await js.subscribe(f"crewbus.events.{task_id}.*", ordered_consumer=True)
        kinds = []
        async for msg in sub.messages:
            event = json.loads(msg.data)
            kinds.append(event["type"])
            if event["type"] in ("task_completed", "task_failed"):
                break
        await nc.close()
    assert kinds[0] == "task_submitted"
    assert kinds[-1] == "task_completed"
    assert "task_planned" in kinds and "task_critiqued" in kinds
    assert event["result"]["answer"]
