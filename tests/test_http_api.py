"""The HTTP gateway's REST API against a real stack (nats-server, orchestrator, agents, the
simulated model), over real HTTP: idempotent submit, state, list, cancel, approvals, trace,
probes, and problem+json for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest
from nats.aio.client import Client as NATS

from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer
from crewbus.httpapi.access import choose_host
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.settings import BusSettings
from crewbus_agents.tools import ToolSettings
from tests.gateway_helpers import http_stack, problem_of, read_sse, running_gateway
from tests.stack import wait_for_state

pytestmark = pytest.mark.anyio


@pytest.fixture
def tools(tmp_path: Path) -> ToolSettings:
    return ToolSettings(workspace_root=str(tmp_path / "workspaces"))


def write_call(content: str) -> SimReply:
    return SimReply(tool_calls=[("write_file", json.dumps({"path": "out.txt",
                                                           "content": content}))])


async def finished(http: httpx.AsyncClient, task_id: str) -> dict:  # type: ignore[type-arg]
    """The task's state once its event stream has ended."""
    read = await read_sse(http, f"/v1/tasks/{task_id}/events")
    assert read.status == 200 and read.events, read
    response = await http.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200
    state: dict = response.json()  # type: ignore[type-arg]
    return state


async def test_a_submission_with_an_idempotency_key_is_one_task_answered_201_then_200(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        first = await s.http.post("/v1/tasks", json={"text": "Compare NATS and Kafka"},
                                  headers={"Idempotency-Key": "order-42"})
        again = await s.http.post("/v1/tasks", json={"text": "Compare NATS and Kafka"},
                                  headers={"Idempotency-Key": "order-42"})
        assert first.status_code == 201, first.text
        assert again.status_code == 200, again.text
        task_id = first.json()["task_id"]
        assert again.json() == {**first.json(), "duplicate": True}
        assert first.headers["location"] == f"/v1/tasks/{task_id}"
        state = await finished(s.http, task_id)
        listed = (await s.http.get("/v1/tasks", params={"limit": 10})).json()["tasks"]
        completed = (await s.http.get("/v1/tasks", params={"status": "completed"})).json()
        running = (await s.http.get("/v1/tasks", params={"status": "running"})).json()
    assert state["status"] == "completed" and state["result"]["answer"]
    assert [t["task_id"] for t in listed] == [task_id]
    assert listed[0]["score"] == state["result"]["score"]
    assert [t["task_id"] for t in completed["tasks"]] == [task_id]
    assert running["tasks"] == []


async def test_a_cancel_over_http_cancels_the_task_on_the_bus(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    model.script("researcher", SimReply(delay_s=30.0))  # the task stays running
    async with http_stack(nats_server.url, model.base_url) as s:
        task_id = (await s.http.post("/v1/tasks", json={"text": "Slow one"})).json()["task_id"]
        await wait_for_state(s.client, task_id, ("running",), 30)
        response = await s.http.post(f"/v1/tasks/{task_id}/cancel",
                                     json={"reason": "changed my mind"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        state = await finished(s.http, task_id)
        again = await s.http.post(f"/v1/tasks/{task_id}/cancel")
    assert state["status"] == "cancelled"
    assert problem_of(again)["code"] in ("conflict", "not_found")


@pytest.mark.parametrize("approved", [True, False], ids=["approve", "deny"])
async def test_a_paused_tool_call_is_listed_and_resolved_over_http(
    nats_server: NatsServer, model: SimulatedModel, tools: ToolSettings, approved: bool
) -> None:
    model.script("executor", write_call("hello"), SimReply(content="Done with the file."))
    async with http_stack(nats_server.url, model.base_url, tool_settings=tools) as s:
        task_id = (await s.http.post("/v1/tasks", json={"text": "Write hello"})).json()["task_id"]
        await wait_for_state(s.client, task_id, ("awaiting_approval",), 30)
        listed = (await s.http.get(f"/v1/tasks/{task_id}/approvals")).json()
        (pending,) = listed["approvals"]
        inbox = (await s.http.get("/v1/tasks", params={"status": "awaiting_approval"})).json()
        response = await s.http.post(
            f"/v1/tasks/{task_id}/approvals/{pending['call_key']}",
            json={"approved": approved, "reason": "" if approved else "not today"})
        assert response.status_code == 200, response.text
        state = await finished(s.http, task_id)
        after = (await s.http.get(f"/v1/tasks/{task_id}/approvals")).json()["approvals"]
    assert listed["status"] == "awaiting_approval" and pending["tool"] == "write_file"
    assert '"hello"' in pending["arguments"] and pending["decision"] is None
    assert [t["task_id"] for t in inbox["tasks"]] == [task_id]
    assert state["status"] == "completed"
    assert after[0]["decision"]["approved"] is approved and after[0]["decision"]["by"] == "local"
    written = Path(tools.workspace_root) / task_id / "out.txt"
    assert written.exists() is approved


async def test_the_trace_is_the_span_tree_as_json(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        task_id = (await s.http.post("/v1/tasks", json={"text": "Trace me"})).json()["task_id"]
        await finished(s.http, task_id)
        with anyio.fail_after(30):  # spans are written without acks: wait until stored
            while True:
                tree = (await s.http.get(f"/v1/tasks/{task_id}/trace")).json()
                names = _names(tree["roots"])
                if any(n.startswith("invoke_agent critic") for n in names):
                    break
                await anyio.sleep(0.1)
    (root,) = tree["roots"]
    assert root["span"]["name"] == f"task {task_id}" and root["span"]["kind"] == "task"
    assert tree["spans"] == len(names)
    assert any(n.startswith("chat ") for n in names)
    assert {"invoke_agent planner", "invoke_agent researcher"} <= set(names)


def _names(nodes: list) -> list[str]:  # type: ignore[type-arg]
    out = []
    for node in nodes:
        out.append(node["span"]["name"])
        out += _names(node["children"])
    return out


async def test_every_kind_of_bad_input_is_problem_json_with_the_bus_code_and_path(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url,
                          gateway={"max_body_bytes": 2000}) as s:
        post = s.http.post
        cases = {
            "malformed": await post("/v1/tasks", content=b"{not json"),
            "not_object": await post("/v1/tasks", content=b"[1, 2]"),
            "bad_value": await post("/v1/tasks", json={"text": "x", "limits": {"max_rounds": 99}}),
            "unknown_field": await post("/v1/tasks", json={"text": "x",
                                                           "limits": {"max_cost": 1}}),
            "blank_text": await post("/v1/tasks", json={"text": "   "}),
            "version": await post("/v1/tasks", json={"text": "x", "schema_version": 2}),
            "too_large": await post("/v1/tasks", json={"text": "x" * 3000}),
            "unknown_task": await s.http.get("/v1/tasks/t-nope"),
            "unknown_task_events": await s.http.get("/v1/tasks/t-nope/events"),
            "bad_task_id": await s.http.get("/v1/tasks/no.dots.here"),
            "bad_query": await s.http.get("/v1/tasks", params={"limit": 0}),
            "bad_status": await s.http.get("/v1/tasks", params={"status": "sleeping"}),
            "no_route": await s.http.get("/v1/nothing"),
            "wrong_method": await s.http.delete("/v1/tasks"),
            "bad_decision": await post("/v1/tasks/t-nope/approvals/k", json={"approve": True}),
            "decision_not_json": await post("/v1/tasks/t-nope/approvals/k", content=b"yes"),
            "unknown_approval": await post("/v1/tasks/t-nope/approvals/k",
                                           json={"approved": True}),
        }
        task_id = (await post("/v1/tasks", json={"text": "ok"})).json()["task_id"]
        await finished(s.http, task_id)
        cases["bad_last_event_id"] = await s.http.get(f"/v1/tasks/{task_id}/events",
                                                      headers={"Last-Event-ID": "abc"})
    expected = {
        "malformed": (400, "malformed_json", None),
        "not_object": (422, "invalid_message", None),
        "bad_value": (422, "invalid_message", "$.limits.max_rounds"),
        "unknown_field": (422, "invalid_message", "$.limits.max_cost"),
        "blank_text": (422, "invalid_message", None),
        "version": (422, "unsupported_schema_version", None),
        "too_large": (413, "payload_too_large", None),
        "unknown_task": (404, "not_found", None),
        "unknown_task_events": (404, "not_found", None),
        "bad_task_id": (400, "invalid_request", "$path.task_id"),
        "bad_query": (400, "invalid_request", "$query.limit"),
        "bad_status": (400, "invalid_request", "$query.status"),
        "no_route": (404, "not_found", None),
        "wrong_method": (405, "method_not_allowed", None),
        "bad_decision": (422, "invalid_message", None),
        "decision_not_json": (400, "malformed_json", None),
        "unknown_approval": (404, "not_found", None),
        "bad_last_event_id": (400, "invalid_request", None),
    }
    got = {}
    for name, response in cases.items():
        body = problem_of(response)
        got[name] = (response.status_code, body["code"], body.get("path"))
        assert body["detail"] and "Traceback" not in body["detail"]
    assert got == expected


async def test_the_probes_answer_and_metrics_count_requests_by_route_template(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        await s.http.get("/v1/tasks/t-missing")
        health = await s.http.get("/healthz")
        ready = await s.http.get("/readyz")
        scraped = (await s.http.get("/metrics")).text
    assert health.json()["status"] == "ok" and ready.json()["status"] == "ok"
    assert ('crewbus_http_requests_total{method="GET",route="/v1/tasks/{task_id}",'
            'status="404"}') in scraped
    assert "t-missing" not in scraped


async def test_readyz_and_every_route_say_unavailable_while_nats_is_down(
    nats_server: NatsServer, nc: NATS
) -> None:
    await ensure_topology(nc.jetstream(), BusSettings())
    async with running_gateway(nc) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/readyz")).status_code == 200
        nats_server.stop()
        with anyio.fail_after(60):
            while (ready := await http.get("/readyz")).status_code != 503:
                await anyio.sleep(0.1)
        submitted = await http.post("/v1/tasks", json={"text": "anyone?"})
        health = await http.get("/healthz")
        nats_server.start()  # so that the connection closes in order
    assert ready.json()["status"] == "unavailable"
    assert submitted.status_code == 503 and problem_of(submitted)["code"] == "unavailable"
    assert health.status_code == 200


def test_an_open_gateway_binds_loopback_whatever_host_is_asked() -> None:
    assert choose_host("0.0.0.0", have_keys=False)[0] == "127.0.0.1"
    assert "no API keys" in choose_host("0.0.0.0", have_keys=False)[1]
    assert choose_host("0.0.0.0", have_keys=True) == ("0.0.0.0", "")
    assert choose_host("::1", have_keys=False) == ("::1", "")


async def test_datasets_are_read_over_http_as_the_bus_keeps_them(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    from crewbus.evals.datasets import DatasetStore
    from crewbus_contracts.evals import DatasetItem, ItemInput

    async with http_stack(nats_server.url, model.base_url) as s:
        store = DatasetStore(s.client.js)
        await store.create("arith", [DatasetItem(id="i1", input=ItemInput(text="2+2"),
                                                 expected=4)], description="sums")
        listed = (await s.http.get("/v1/datasets")).json()["datasets"]
        items = (await s.http.get("/v1/datasets/arith")).json()
        missing = await s.http.get("/v1/datasets/nothing")
        bad_version = await s.http.get("/v1/datasets/arith", params={"version": 7})
    assert [d["name"] for d in listed] == ["arith"] and listed[0]["description"] == "sums"
    assert items["version"] == 1 and items["items"][0]["expected"] == 4
    assert problem_of(missing)["code"] == "not_found"
    assert problem_of(bad_version)["code"] == "not_found"
