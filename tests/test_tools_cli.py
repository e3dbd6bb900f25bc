"""`crewbus tools list|call` and `crewbus mcp serve` as a user runs them: real processes,
the real time server, one-line errors with the documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.mcp_helpers import time_server, write_servers


def crewbus(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crewbus", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def environment(tmp_path: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "CREWBUS_DATA_DIR": str(tmp_path / "data"),
            "CREWBUS_METRICS_PORT": "0", **more}


def test_tools_list_shows_built_in_and_mcp_tools_with_source_schema_and_approval(
    tmp_path: Path,
) -> None:
    servers = write_servers(tmp_path / "mcp.json", {"time": time_server()})
    env = environment(tmp_path, CREWBUS_MCP_SERVERS=str(servers))
    listed = crewbus("tools", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    tools = {t["name"]: t for t in data["tools"]}
    time_tool = tools["time__get_current_time"]
    assert time_tool["source"] == "mcp:time" and time_tool["approval"] is False
    assert time_tool["parameters"]["required"] == ["timezone"]
    assert "readOnlyHint=True" in time_tool["approval_reason"]
    assert tools["python"]["source"] == "built-in" and tools["python"]["approval"] is True
    (server,) = data["mcp_servers"]
    assert server["state"] == "ready" and server["protocol_version"] == "2026-07-28"
    text = crewbus("tools", "list", env=env)
    assert "MCP server time (stdio): ready" in text.stdout
    assert "time__convert_time" in text.stdout and "mcp:time" in text.stdout


def test_tools_call_runs_one_tool_by_hand_and_says_why_when_it_cannot(tmp_path: Path) -> None:
    servers = write_servers(tmp_path / "mcp.json", {"time": time_server()})
    env = environment(tmp_path, CREWBUS_MCP_SERVERS=str(servers))
    called = crewbus("tools", "call", "time__get_current_time", '{"timezone": "UTC"}', env=env)
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["timezone"] == "UTC"
    calc = crewbus("tools", "call", "calculator", '{"expression": "6*7"}', env=env)
    assert calc.returncode == 0 and calc.stdout.strip() == "42"
    invalid = crewbus("tools", "call", "time__get_current_time", '{"timezone": 1}', env=env)
    assert invalid.returncode == 1 and "$.timezone" in invalid.stderr
    assert "Traceback" not in invalid.stderr
    unknown = crewbus("tools", "call", "nope", "{}", env=env)
    assert unknown.returncode == 2 and "unknown tool 'nope'" in unknown.stderr
    not_json = crewbus("tools", "call", "calculator", "{oops", env=env)
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr


def test_a_bad_servers_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "mcp.toml"
    bad.write_text('[mcpServers.x]\ncommand = "a"\nalow = ["t"]\n')
    result = crewbus("tools", "list", env=environment(tmp_path, CREWBUS_MCP_SERVERS=str(bad)))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "mcp.toml: server 'x'" in line and "alow" in line


def test_mcp_serve_without_nats_says_so_in_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path, CREWBUS_CONNECT_TIMEOUT_S="1")
    result = crewbus("mcp", "serve", "--stdio", "--nats", "nats://127.0.0.1:1", env=env,
                     timeout=60)
    assert result.returncode == 3, result.stderr
    assert "no NATS server at nats://127.0.0.1:1" in result.stderr.strip().splitlines()[-1]
