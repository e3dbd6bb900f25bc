"""http_get: off by default, per-host allowlist, real local HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from crewbus_agents.tools import ToolContext, ToolOutcome, ToolSettings, default_registry
from crewbus_agents.tools.web import host_allowed
from tests.http_site import LocalSite, local_site

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with local_site() as found:
        yield found


def make_ctx(tmp_path: Path, allowlist: list[str], **settings: object) -> ToolContext:
    s = ToolSettings(
        workspace_root=str(tmp_path),
        http_allowlist=allowlist,
        **settings,  # type: ignore[arg-type]
    )
    return ToolContext.create(s, task_id="task-http", step_id="s1")


async def get(ctx: ToolContext, url: str) -> ToolOutcome:
    return await default_registry(ctx.settings).call("http_get", json.dumps({"url": url}), ctx)


def test_http_get_is_not_offered_without_an_allowlist() -> None:
    assert "http_get" not in default_registry(ToolSettings())
    assert "http_get" in default_registry(ToolSettings(http_allowlist=["example.com"]))


async def test_host_not_in_the_allowlist_is_refused_without_any_request(
    tmp_path: Path, site: LocalSite
) -> None:
    ctx = make_ctx(tmp_path, ["example.com"])
    outcome = await get(ctx, f"http://127.0.0.1:{site.port}/hello")
    assert outcome.error_type == "HostNotAllowed"
    assert "'127.0.0.1' is not in the allowlist" in (outcome.error or "")
    assert site.requests == []


async def test_allowlisted_local_host_is_fetched(tmp_path: Path, site: LocalSite) -> None:
    ctx = make_ctx(tmp_path, ["127.0.0.1"])
    outcome = await get(ctx, f"http://127.0.0.1:{site.port}/hello")
    assert outcome.ok, outcome.error
    assert outcome.output.startswith("HTTP 200 text/plain")
    assert "hello from the test site" in outcome.output


async def test_redirect_to_a_host_not_allowed_is_refused(tmp_path: Path, site: LocalSite) -> None:
    ctx = make_ctx(tmp_path, ["127.0.0.1"])
    outcome = await get(ctx, f"http://127.0.0.1:{site.port}/redirect-out")
    assert outcome.error_type == "HostNotAllowed"
    assert "localhost" in (outcome.error or "")
    assert site.requests == ["/redirect-out"]


async def test_body_is_cut_at_the_size_limit(tmp_path: Path, site: LocalSite) -> None:
    ctx = make_ctx(tmp_path, ["127.0.0.1"], http_max_bytes=100)
    outcome = await get(ctx, f"http://127.0.0.1:{site.port}/big")
    assert outcome.ok
    assert "z" * 100 in outcome.output and "z" * 101 not in outcome.output
    assert "longer than 100 bytes" in outcome.output


async def test_non_http_schemes_are_refused(tmp_path: Path) -> None:
    outcome = await get(make_ctx(tmp_path, ["127.0.0.1"]), "file:///etc/passwd")
    assert outcome.status == "error"
    assert "only http and https" in (outcome.error or "")


async def test_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback is closed here: the connection is refused at once.
    outcome = await get(make_ctx(tmp_path, ["127.0.0.1"], http_timeout_s=5), "http://127.0.0.1:9/")
    assert outcome.error_type == "ToolFailed"
    assert "could not fetch" in (outcome.error or "")


def test_allowlist_matches_exact_hosts_and_wildcard_subdomains() -> None:
    allow = ["example.com", "*.docs.example.org"]
    assert host_allowed("example.com", allow)
    assert host_allowed("EXAMPLE.com.", allow)
    assert not host_allowed("api.example.com", allow)
    assert not host_allowed("evil-example.com", allow)
    assert host_allowed("a.docs.example.org", allow)
    assert not host_allowed("docs.example.org.evil.net", allow)
    assert not host_allowed("xdocs.example.org", allow)
