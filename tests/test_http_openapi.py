"""`/openapi.json` is a valid OpenAPI 3.1 document covering every API route, and the
gateway's real responses (successes and refusals, from a real stack) match it."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimulatedModel
from tests.gateway_helpers import http_stack, read_sse

pytestmark = pytest.mark.anyio


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The operation whose path template matches `path`."""
    for template, operations in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            found: dict[str, Any] = operations[method.lower()]
            return found
    raise AssertionError(f"{method} {path} is not in /openapi.json")


def response_schema(spec: dict[str, Any], method: str, path: str, status: int,
                    media: str) -> dict[str, Any] | None:
    declared = operation(spec, method, path)["responses"]
    entry = declared.get(str(status)) or declared.get(f"{str(status)[0]}XX")
    entry = entry or declared.get("default")
    assert entry is not None, f"{method} {path} does not declare {status}"
    if status == 204:
        return None
    content = entry.get("content", {})
    assert media in content, f"{method} {path} {status} does not declare {media}"
    schema: dict[str, Any] = content[media]["schema"]
    return schema


def check(spec: dict[str, Any], response: httpx.Response) -> None:
    request = response.request
    media = response.headers.get("content-type", "").split(";")[0]
    schema = response_schema(spec, request.method, request.url.path, response.status_code,
                             media)
    if schema is None or media not in ("application/json", "application/problem+json"):
        return
    validator = OAS31Validator({**schema, "components": spec["components"]})
    errors = [e.message for e in validator.iter_errors(response.json())]
    assert errors == [], (request.method, request.url.path, response.status_code, errors)


async def test_real_responses_match_the_openapi_document(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    seen: list[httpx.Response] = []
    async with http_stack(nats_server.url, model.base_url) as s:
        spec = (await s.http.get("/openapi.json")).json()
        s.http.event_hooks["response"] = [lambda r: _keep(seen, r)]
        created = await s.http.post("/v1/tasks", json={"text": "Validate me"},
                                    headers={"Idempotency-Key": "spec"})
        await s.http.post("/v1/tasks", json={"text": "Validate me"},
                          headers={"Idempotency-Key": "spec"})
        task_id = created.json()["task_id"]
        events = await read_sse(s.http, f"/v1/tasks/{task_id}/events")
        for path in (f"/v1/tasks/{task_id}", "/v1/tasks", f"/v1/tasks/{task_id}/approvals",
                     f"/v1/tasks/{task_id}/trace", "/v1/models", "/healthz", "/readyz",
                     "/v1/tasks/t-none", "/v1/tasks?limit=0", "/metrics"):
            await s.http.get(path)
        await s.http.post(f"/v1/tasks/{task_id}/cancel", json={"reason": "late"})
        await s.http.post(f"/v1/tasks/{task_id}/approvals/nope", json={"approved": True})
        await s.http.post("/v1/tasks", json={"text": "x", "limits": {"max_rounds": 0}})
        await s.http.post("/v1/chat/completions", json={
            "model": "crewbus", "messages": [{"role": "user", "content": "And the chat?"}]})
        await s.http.post("/v1/chat/completions", json={"model": "crewbus", "messages": [],
                                                        "tools": []})
        await s.http.get(f"/v1/tasks/{task_id}/events",
                         headers={"Last-Event-ID": events.events[-1].id or ""})
        for response in seen:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                await response.aread()
    statuses = {r.status_code for r in seen}
    assert {200, 201, 204, 400, 404, 422} <= statuses, statuses
    for response in seen:
        check(spec, response)
    assert len(seen) >= 18


async def _keep(seen: list[httpx.Response], response: httpx.Response) -> None:
    seen.append(response)


async def test_the_document_is_valid_openapi_and_covers_every_api_route(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        spec = (await s.http.get("/openapi.json")).json()
        routes = [(m, r.path) for r in s.gateway.app.routes
                  if getattr(r, "include_in_schema", False) for m in getattr(r, "methods", ())]
    validate_spec(spec)
    assert spec["openapi"].startswith("3.1")
    for method, path in routes:
        if method == "HEAD":
            continue
        op = spec["paths"][path][method.lower()]
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok and op["responses"]["4XX"], (method, path)
        for code in ok:
            if code != "204":
                assert op["responses"][code].get("content"), (method, path, code)
    components = spec["components"]["schemas"]
    for contract in ("SubmitTask", "TaskAccepted", "TaskState", "ControlAccepted", "Problem",
                     "ChatCompletion", "ChatCompletionChunk", "TraceTree", "Span"):
        assert contract in components, contract
    submit_body = spec["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]
    assert json.dumps(submit_body).count("SubmitTask") == 1
