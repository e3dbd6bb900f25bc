"""API keys: created, listed and revoked by the real CLI, hashed at rest, scopes enforced
per endpoint (401/403), per-key rate limits (429 with Retry-After), and never a key in a
log line, a metric or a trace."""

from __future__ import annotations

import logging
import sys

import anyio
import httpx
import msgspec
import pytest

from crewbus.bus.kv_keys import bucket_keys
from crewbus.devstack.nats_server import NatsServer
from crewbus.httpapi.apikeys import KeyStore
from crewbus.httpapi.ratelimit import RateLimiter
from crewbus.llm.simulated import SimulatedModel
from tests.gateway_helpers import http_stack, keys_enforced, problem_of

pytestmark = pytest.mark.anyio


async def crewbus_cli(nats_url: str, *args: str) -> tuple[int, str, str]:
    done = await anyio.run_process([sys.executable, "-m", "crewbus", *args, "--nats", nats_url],
                                   check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_the_cli_creates_lists_and_revokes_keys_and_the_bucket_holds_only_a_hash(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    code, key, said = await crewbus_cli(nats_server.url, "apikey", "create", "ci",
                                        "--scope", "read,submit")
    assert code == 0, said
    key = key.strip()
    assert key.startswith("crewbus_") and "shown once" in said
    _, listed, _ = await crewbus_cli(nats_server.url, "apikey", "list")
    bad_scope = await crewbus_cli(nats_server.url, "apikey", "create", "x", "--scope", "root")
    twice = await crewbus_cli(nats_server.url, "apikey", "create", "ci")
    async with http_stack(nats_server.url, model.base_url) as s:
        kv = s.gateway.app.state.bus.keys.kv
        stored = [(await kv.get(k)).value for k in await bucket_keys(kv)]
        assert (await s.http.get("/v1/tasks", headers=bearer(key))).status_code == 200
        code, _, said = await crewbus_cli(nats_server.url, "apikey", "revoke", "ci")
        assert code == 0, said
        after = await s.http.get("/v1/tasks", headers=bearer(key))
    assert "ci" in listed and "submit,read" in listed and key not in listed
    assert bad_scope[0] == 2 and "unknown scope root" in bad_scope[2]
    assert twice[0] == 1 and "exists" in twice[2]
    assert len(stored) == 1 and key.encode() not in stored[0]
    secret = key.split("_", 2)[2]  # the secret itself may hold "_": split twice only
    assert len(secret) >= 20 and secret.encode() not in stored[0]
    assert problem_of(after)["code"] == "unauthorized"


SCOPED = [
    ("submit", "POST", "/v1/tasks", {"text": "scoped"}),
    ("submit", "POST", "/v1/chat/completions",
     {"model": "crewbus", "messages": [{"role": "user", "content": "hi"}]}),
    ("read", "GET", "/v1/tasks", None),
    ("read", "GET", "/v1/tasks/t-x/events", None),
    ("read", "GET", "/v1/tasks/t-x/trace", None),
    ("read", "GET", "/v1/models", None),
    ("read", "GET", "/metrics", None),
    ("submit", "POST", "/v1/tasks/t-x/cancel", {}),
    ("approve", "POST", "/v1/tasks/t-x/approvals/k", {"approved": True}),
]


async def test_each_endpoint_needs_a_key_with_its_scope(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        store: KeyStore = s.gateway.app.state.bus.keys
        keys = {scope: (await store.create(f"only-{scope}", [scope]))[0]
                for scope in ("submit", "read", "approve")}
        admin, _ = await store.create("boss", ["admin"])
        with anyio.fail_after(30):  # an open gateway closes within a second of a key
            while (await s.http.get("/v1/tasks")).status_code != 401:
                await anyio.sleep(0.2)
        results = {}
        for scope, method, path, body in SCOPED:
            for holder, key in keys.items():
                response = await s.http.request(method, path, json=body, headers=bearer(key))
                results[(method, path, holder)] = response.status_code
                if holder != scope:
                    problem = problem_of(response)
                    assert problem["code"] == "forbidden" and scope in problem["detail"]
            anonymous = await s.http.request(method, path, json=body)
            assert anonymous.status_code == 401
            assert "Bearer" in anonymous.headers["www-authenticate"]
            forged = await s.http.request(method, path, json=body,
                                          headers=bearer(keys[scope][:-4] + "AAAA"))
            assert forged.status_code == 401
            as_admin = await s.http.request(method, path, json=body, headers=bearer(admin))
            assert as_admin.status_code not in (401, 403), (path, as_admin.text)
        health = await s.http.get("/healthz")
        spec = await s.http.get("/openapi.json")
    for scope, method, path, _ in SCOPED:
        for holder in keys:
            allowed = results[(method, path, holder)] not in (401, 403)
            assert allowed is (holder == scope), (path, holder)
    assert health.status_code == 200 and spec.status_code == 200


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        store: KeyStore = s.gateway.app.state.bus.keys
        slow, _ = await store.create("slow", ["read"], rate_per_minute=3)
        other, _ = await store.create("other", ["read"], rate_per_minute=3)
        await keys_enforced(s.http)
        codes = [(await s.http.get("/v1/models", headers=bearer(slow))).status_code
                 for _ in range(4)]
        limited = await s.http.get("/v1/models", headers=bearer(slow))
        unaffected = await s.http.get("/v1/models", headers=bearer(other))
    assert codes == [200, 200, 200, 429]
    problem = problem_of(limited)
    assert problem["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    assert problem["retry_after_s"] == int(limited.headers["retry-after"])
    assert unaffected.status_code == 200


def test_the_bucket_refills_at_the_rate_and_says_how_long_to_wait() -> None:
    limiter = RateLimiter()
    assert [limiter.take("k", 60, now=0.0) for _ in range(60)] == [None] * 60
    assert limiter.take("k", 60, now=0.0) == 1
    assert limiter.take("k", 60, now=1.0) is None
    assert limiter.take("another", 6, now=0.0) is None


async def test_no_key_reaches_a_log_line_a_metric_or_a_trace(
    nats_server: NatsServer, model: SimulatedModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with http_stack(nats_server.url, model.base_url) as s:
        store: KeyStore = s.gateway.app.state.bus.keys
        key, _ = await store.create("writer", ["admin"])
        await keys_enforced(s.http)
        accepted = await s.http.post("/v1/tasks", json={"text": "secretless"},
                                     headers=bearer(key))
        task_id = accepted.json()["task_id"]
        async with s.http.stream("GET", f"/v1/tasks/{task_id}/events",
                                 headers=bearer(key)) as stream:
            await stream.aread()
        await s.http.get("/v1/tasks/t-nope", headers=bearer(key))
        await s.http.get("/v1/tasks", headers=bearer(key + "x"))
        scraped = (await s.http.get("/metrics", headers=bearer(key))).text
        trace = (await s.http.get(f"/v1/tasks/{task_id}/trace", headers=bearer(key))).text
        state = (await s.http.get(f"/v1/tasks/{task_id}", headers=bearer(key))).text
    secret = key.split("_", 2)[2]  # the secret itself may hold "_": split twice only
    assert len(secret) >= 20
    for text in (caplog.text, scraped, trace, state):
        assert secret not in text
    assert msgspec.json.decode(state)["status"] == "completed"


async def test_a_ui_login_sets_an_httponly_cookie_that_the_pages_accept(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        store: KeyStore = s.gateway.app.state.bus.keys
        key, _ = await store.create("person", ["read"])
        await keys_enforced(s.http)
        to_login = await s.http.get("/ui/")
        wrong = await s.http.post("/ui/login", data={"key": "nope", "next": "/ui/"})
        logged = await s.http.post("/ui/login", data={"key": key, "next": "//evil.example"})
        async with httpx.AsyncClient(base_url=s.gateway.url,
                                     cookies={"crewbus_key": key}) as browser:
            page = await browser.get("/ui/")
            refused = await browser.post("/ui/submit", data={"text": "not mine to do"})
    assert to_login.status_code == 303 and to_login.headers["location"].startswith("/ui/login")
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert logged.status_code == 303 and logged.headers["location"] == "/ui/"
    cookie = logged.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert page.status_code == 200 and "key: person" in page.text
    assert refused.status_code == 403 and "submit" in refused.text
