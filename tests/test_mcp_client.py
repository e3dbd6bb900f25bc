"""The executor's MCP client against real servers: the reference time server of both
protocol eras (SDK 2.x and 1.x), the reference git server, and SDK-built servers of the
test over stdio and streamable HTTP (one that dies mid-call, one unreachable, one that
never answers, one whose tool list changes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from crewbus_agents.mcp_tools import McpSettings, McpToolSource
from crewbus_agents.mcp_tools.config import parse_servers
from crewbus_agents.tools import (
    ToolContext,
    ToolOutcome,
    ToolRegistry,
    ToolSettings,
    ToolUnavailable,
)
from tests.mcp_helpers import (
    LEGACY_PYTHON,
    free_port,
    git_server,
    make_git_repo,
    start_http_server,
    time_server,
    wait_for_http,
    write_test_server,
)

pytestmark = pytest.mark.anyio

FAST = McpSettings(connect_timeout_s=60, call_timeout_s=20, restart_backoff_s=0.2,
                   restart_backoff_max_s=1)


@asynccontextmanager
async def registry_with(
    servers: dict[str, dict[str, Any]], settings: McpSettings = FAST, logs: Path | None = None,
) -> AsyncIterator[tuple[ToolRegistry, McpToolSource]]:
    if logs is not None:
        settings = McpSettings(**{**_fields(settings), "server_logs": str(logs)})
    source = McpToolSource(parse_servers({"mcpServers": servers}, "test", os.environ),
                           settings)
    registry = ToolRegistry()
    registry.add_source(source)
    async with source.running():
        yield registry, source


def _fields(settings: McpSettings) -> dict[str, Any]:
    return {f: getattr(settings, f) for f in settings.__struct_fields__}


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext.create(ToolSettings(workspace_root=str(tmp_path / "ws")), "t1", "s1")


async def call(
    registry: ToolRegistry, ctx: ToolContext, name: str, /, **args: Any
) -> ToolOutcome:
    return await registry.call(name, json.dumps(args), ctx)


async def until(condition: Any, timeout_s: float = 60) -> None:
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.05)


async def test_the_time_server_of_sdk_2_is_offered_namespaced_and_answers_with_structure(
    ctx: ToolContext, tmp_path: Path
) -> None:
    async with registry_with({"time": time_server()}, logs=tmp_path) as (registry, source):
        outcome = await call(registry, ctx, "time__get_current_time", timezone="Asia/Tokyo")
        connection = source.connections["time"]
        names = registry.names
        approval = registry.requires_approval("time__get_current_time")
    assert names == ["time__get_current_time", "time__convert_time"]
    assert connection.protocol_version == "2026-07-28"  # server/discover, the new era
    assert not approval  # readOnlyHint: true
    assert outcome.ok and outcome.server == "time"
    assert outcome.structured["timezone"] == "Asia/Tokyo"
    assert outcome.structured["datetime"].endswith("+09:00")
    assert json.loads(outcome.output) == outcome.structured


@pytest.mark.skipif(not LEGACY_PYTHON.exists(),
                    reason=f"no Python with the 1.x SDK at {LEGACY_PYTHON} (`.ci/run` makes it)")
async def test_a_time_server_of_the_handshake_era_sdk_1_works_too(ctx: ToolContext) -> None:
    async with registry_with({"old": time_server(LEGACY_PYTHON)}) as (registry, source):
        outcome = await call(registry, ctx, "old__convert_time", source_timezone="UTC",
                             time="12:00", target_timezone="Asia/Kolkata")
        connection = source.connections["old"]
        approval = registry.requires_approval("old__convert_time")
    assert connection.protocol_version == "2025-11-25"  # initialize, after the probe failed
    assert connection.server_version is not None and connection.server_version.endswith("1.30.0")
    assert approval  # no annotations in that version: ask a human
    assert outcome.ok and "17:30" in outcome.output


async def test_an_is_error_result_reaches_the_model_as_the_tools_own_error(
    ctx: ToolContext,
) -> None:
    async with registry_with({"time": time_server()}) as (registry, _):
        outcome = await call(registry, ctx, "time__get_current_time", timezone="Mars/Olympus")
    assert outcome.status == "error" and outcome.error_type == "McpToolError"
    assert "Mars/Olympus" in outcome.for_model()


async def test_the_git_servers_annotations_make_reset_need_approval_and_status_not(
    ctx: ToolContext, tmp_path: Path
) -> None:
    repo = make_git_repo(tmp_path / "repo")
    async with registry_with({"git": git_server(repo)}) as (registry, _):
        needs = {n: registry.requires_approval(n) for n in registry.names}
        outcome = await call(registry, ctx, "git__git_status", repo_path=str(repo))
    assert needs["git__git_reset"] and not needs["git__git_status"]
    assert not needs["git__git_commit"]  # readOnlyHint false, destructiveHint false: additive
    assert outcome.ok and "a.txt" in outcome.output


async def test_arguments_that_break_the_schema_are_refused_before_the_server_sees_them(
    ctx: ToolContext, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    script, ledger, port = write_test_server(tmp_path), tmp_path / "ledger", free_port()
    processes.append(start_http_server(script, port, ledger, tmp_path / "http.log"))
    await wait_for_http(port, processes[-1])
    async with registry_with({"t": {"url": f"http://127.0.0.1:{port}/mcp"}}) as (registry, _):
        refused = await call(registry, ctx, "t__echo", text="hi", times="twice")
        valid = await call(registry, ctx, "t__echo", text="hi", times=2)
    assert refused.error_type == "ToolArgumentsInvalid" and "$.times" in (refused.error or "")
    assert valid.ok and valid.output == "hi hi"
    assert ledger.read_text().splitlines() == ["echo hi"]  # only the valid call arrived


async def test_an_http_server_that_dies_mid_call_fails_it_as_retryable_then_recovers(
    ctx: ToolContext, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    script, ledger, port = write_test_server(tmp_path), tmp_path / "ledger", free_port()
    processes.append(start_http_server(script, port, ledger, tmp_path / "http.log"))
    await wait_for_http(port, processes[-1])
    async with registry_with({"t": {"url": f"http://127.0.0.1:{port}/mcp"}}) as (registry, source):
        started = time.monotonic()
        with pytest.raises(ToolUnavailable, match="MCP server 't'"):
            await call(registry, ctx, "t__die")
        failed_in = time.monotonic() - started
        await until(lambda: source.connections["t"].state != "ready")
        with pytest.raises(ToolUnavailable, match="MCP server 't' is"):
            await call(registry, ctx, "t__echo", text="meanwhile")
        processes.append(start_http_server(script, port, ledger, tmp_path / "http2.log"))
        await until(lambda: source.connections["t"].state == "ready")
        back = await call(registry, ctx, "t__echo", text="back")
    assert failed_in < FAST.call_timeout_s  # the lost connection is noticed, not waited out
    assert back.ok and back.output == "back"
    assert source.connections["t"].starts >= 2
    assert "echo meanwhile" not in ledger.read_text()


async def test_an_unreachable_http_server_fails_calls_at_once_with_the_reason(
    ctx: ToolContext,
) -> None:
    port = free_port()  # nothing listens there
    async with registry_with({"gone": {"url": f"http://127.0.0.1:{port}/mcp"}}) as (
            registry, source):
        connection = source.connections["gone"]
        started = time.monotonic()
        with pytest.raises(ToolUnavailable, match=r"MCP server 'gone' is (down|starting)"):
            await registry.call("gone__anything", "{}", ctx)
        elapsed = time.monotonic() - started
    assert connection.state == "stopped" and connection.tools == {}
    assert elapsed < 1
    assert "gone__anything" not in registry.names


async def test_a_server_that_never_answers_the_handshake_is_given_up_on_in_time(
    ctx: ToolContext,
) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        settings = McpSettings(connect_timeout_s=1.5, restart_backoff_s=5)
        started = time.monotonic()
        async with registry_with({"mute": {"url": f"http://127.0.0.1:{port}/mcp"}},
                                 settings) as (registry, source):
            ready_after = time.monotonic() - started
            reason = source.connections["mute"].reason
            with pytest.raises(ToolUnavailable, match=r"no answer to the handshake within 1\.5s"):
                await registry.call("mute__x", "{}", ctx)
    assert ready_after < 10 and "no answer to the handshake" in reason


async def test_a_call_the_server_does_not_answer_in_time_fails_with_a_timeout(
    ctx: ToolContext, tmp_path: Path
) -> None:
    script = write_test_server(tmp_path)
    server = {"command": _python(), "args": [str(script), "stdio", str(tmp_path / "ledger")],
              "timeout": 1}
    async with registry_with({"t": server}) as (registry, _):
        started = time.monotonic()
        outcome = await call(registry, ctx, "t__sleep", seconds=30)
    assert outcome.error_type == "ToolFailed"
    assert "did not answer within 1s" in (outcome.error or "")
    assert time.monotonic() - started < 10


async def test_a_killed_stdio_server_is_restarted_with_backoff_and_steps_retry_meanwhile(
    ctx: ToolContext, tmp_path: Path
) -> None:
    script = write_test_server(tmp_path)
    server = {"command": _python(), "args": [str(script), "stdio", str(tmp_path / "ledger")]}
    async with registry_with({"t": server}, logs=tmp_path / "logs") as (registry, source):
        first = int((await call(registry, ctx, "t__pid")).output)
        os.kill(first, signal.SIGKILL)
        connection = source.connections["t"]
        await until(lambda: connection.state != "ready")
        down_reason = connection.reason
        with pytest.raises(ToolUnavailable, match="MCP server 't' is"):
            await call(registry, ctx, "t__pid")
        await until(lambda: connection.state == "ready")
        second = int((await call(registry, ctx, "t__pid")).output)
    assert second != first
    assert "exited" in down_reason or "restarting" in down_reason
    assert connection.state == "stopped"
    with pytest.raises(ProcessLookupError):  # shut down with the source
        os.kill(second, 0)


async def test_a_changed_tool_list_is_seen_without_a_restart(
    ctx: ToolContext, tmp_path: Path
) -> None:
    script = write_test_server(tmp_path)
    server = {"command": _python(), "args": [str(script), "stdio", str(tmp_path / "ledger")]}
    async with registry_with({"t": server}) as (registry, source):
        assert "t__added_later" not in registry.names
        grown = await call(registry, ctx, "t__grow", name="added_later")
        await until(lambda: "t__added_later" in registry.names, 20)
        added = await call(registry, ctx, "t__added_later")
        starts = source.connections["t"].starts
    assert grown.ok and added.ok and added.output == "added_later"
    assert starts == 1


async def test_allow_and_deny_lists_choose_the_tools_offered(ctx: ToolContext) -> None:
    async with registry_with({"time": time_server(allow=["get_current_time", "convert_time"],
                                                  deny=["convert_time"])}) as (registry, _):
        names = registry.names
        hidden = await call(registry, ctx, "time__convert_time", source_timezone="UTC",
                            time="10:00", target_timezone="UTC")
    assert names == ["time__get_current_time"]
    assert hidden.error_type == "UnknownTool"


def _python() -> str:
    import sys

    return sys.executable
