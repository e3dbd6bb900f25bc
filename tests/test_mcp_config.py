"""The MCP servers file, tool names, the approval policy and argument checks: each rule
alone, without servers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mcp_types import ToolAnnotations

from crewbus.config import load_settings
from crewbus_agents.mcp_tools import McpConfigError, load_servers, model_name, needs_approval
from crewbus_agents.mcp_tools.config import McpServerConfig
from crewbus_agents.mcp_tools.validation import ArgumentsCheck
from crewbus_agents.tools import Redactor, ToolArgumentsInvalid
from crewbus_agents.tools.registry import TOOL_NAME

TOML = """
[mcpServers.time]
command = "mcp-server-time"
args = ["--local-timezone", "${TZ_NAME}"]

[mcpServers.search]
url = "https://search.example/mcp"
headers = { Authorization = "Bearer ${SEARCH_TOKEN}", Accept = "application/json" }
allow = ["query", "count"]
deny = ["count"]
timeout = 5
approval = "never"

[mcpServers.off]
command = "x"
disabled = true
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_toml_file_declares_stdio_and_http_servers_with_secrets_from_the_environment(
    tmp_path: Path,
) -> None:
    env = {"TZ_NAME": "Europe/Paris", "SEARCH_TOKEN": "tok-0123456789"}
    loaded = load_servers(write(tmp_path, "mcp.toml", TOML), env)
    assert set(loaded.servers) == {"time", "search"}  # disabled servers are left out
    time, search = loaded.servers["time"], loaded.servers["search"]
    assert time.transport == "stdio" and time.args == ["--local-timezone", "Europe/Paris"]
    assert search.transport == "http" and search.timeout == 5
    assert search.headers["Authorization"] == "Bearer tok-0123456789"
    assert search.offers("query") and not search.offers("count") and not search.offers("x")
    # Secret-looking names only: the timezone and the Accept header are not secrets.
    assert loaded.secrets == ["Bearer tok-0123456789", "tok-0123456789"]


def test_the_json_shape_of_desktop_clients_is_read_as_it_is(tmp_path: Path) -> None:
    text = ('{"mcpServers": {"git": {"command": "uvx", "args": ["mcp-server-git"], '
            '"env": {"GIT_TOKEN": "${env:GH}"}}}}')
    loaded = load_servers(write(tmp_path, "claude.json", text), {"GH": "ghp-secret-value"})
    assert loaded.servers["git"].env == {"GIT_TOKEN": "ghp-secret-value"}
    assert loaded.secrets == ["ghp-secret-value"]


@pytest.mark.parametrize(("text", "says"), [
    ('{"mcpServers": {"a": {"command": "x", "alow": ["t"]}}}', "unknown field `alow`"),
    ('{"mcpServers": {"a": {"args": []}}}', "exactly one of `command`"),
    ('{"mcpServers": {"a": {"command": "x", "url": "http://h"}}}', "exactly one of"),
    ('{"mcpServers": {"a__b": {"command": "x"}}}', "must match"),
    ('{"mcpServers": {"a": {"url": "ftp://h"}}}', "must start with http"),
    ('{"mcpServers": {"a": {"url": "http://h", "headers": {"K": "${NOPE}"}}}}',
     "variable NOPE is not set"),
    ('{"mcpServers": {"a": {"command": "x", "approval": "sometimes"}}}', "approval"),
    ('{"mcpServers": []}', "expected a table `mcpServers`"),
    ("{not json", "is not valid JSON"),
])
def test_a_bad_servers_file_is_one_clear_error_naming_the_server(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(McpConfigError, match=re.escape(says)) as caught:
        load_servers(write(tmp_path, "bad.json", text), {})
    assert "\n" not in str(caught.value) and "bad.json" in str(caught.value)


def test_a_missing_servers_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(McpConfigError, match=r"nowhere\.toml"):
        load_servers(tmp_path / "nowhere.toml", {})


def test_crewbus_mcp_servers_is_read_by_the_settings_tree() -> None:
    settings = load_settings({"CREWBUS_MCP_SERVERS": "/etc/mcp.toml",
                              "CREWBUS_MCP_CALL_TIMEOUT_S": "7"})
    assert settings.mcp.servers == "/etc/mcp.toml" and settings.mcp.call_timeout_s == 7


@pytest.mark.parametrize(("server", "tool", "expected"), [
    ("time", "get_current_time", "time__get_current_time"),
    ("fs", "files.read", "fs__files_read"),
    ("fs", "ünïcode tool", "fs___n_code_tool"),
])
def test_tool_names_are_namespaced_and_valid_for_the_model(
    server: str, tool: str, expected: str
) -> None:
    assert model_name(server, tool) == expected


def test_a_long_tool_name_is_cut_with_a_hash_so_two_never_meet() -> None:
    one, two = model_name("srv", "x" * 80 + "a"), model_name("srv", "x" * 80 + "b")
    assert one != two and len(one) == 64 and TOOL_NAME.match(one) and TOOL_NAME.match(two)


AUTO = McpServerConfig(command="x")


@pytest.mark.parametrize(("hints", "needed"), [
    (None, True),
    (ToolAnnotations(), True),
    (ToolAnnotations(read_only_hint=True), False),
    (ToolAnnotations(read_only_hint=True, destructive_hint=True), True),
    (ToolAnnotations(read_only_hint=False), True),
    (ToolAnnotations(read_only_hint=False, destructive_hint=False), False),
    (ToolAnnotations(read_only_hint=False, destructive_hint=True), True),
    (ToolAnnotations(destructive_hint=False), True),  # no readOnlyHint: ask
])
def test_annotations_decide_approval_leaning_safe(
    hints: ToolAnnotations | None, needed: bool
) -> None:
    assert needs_approval(AUTO, "t", hints) is needed


def test_the_settings_override_the_annotations() -> None:
    destructive = ToolAnnotations(read_only_hint=False, destructive_hint=True)
    assert not needs_approval(McpServerConfig(command="x", approval="never"), "t", destructive)
    assert needs_approval(McpServerConfig(command="x", approval="always"), "t",
                          ToolAnnotations(read_only_hint=True))
    assert not needs_approval(McpServerConfig(command="x", trusted_tools=["t"]), "t", None)


def test_arguments_are_checked_against_the_tools_schema_naming_the_field() -> None:
    check = ArgumentsCheck("s__t", {"type": "object", "required": ["items"],
                                    "properties": {"items": {"type": "array",
                                                             "items": {"type": "integer"}}}})
    assert check({"items": [1, 2]}) == {"items": [1, 2]}
    wrong = r"'x' is not of type 'integer' - at `\$\.items\[1\]`"
    with pytest.raises(ToolArgumentsInvalid, match=wrong):
        check({"items": [1, "x"]})
    with pytest.raises(ToolArgumentsInvalid, match="'items' is a required property"):
        check({})
    with pytest.raises(ToolArgumentsInvalid, match="must be a JSON object"):
        check([1])


def test_secrets_given_to_servers_are_redacted_by_the_tracers_patterns() -> None:
    redactor = Redactor([re.escape("tok-0123456789")], env={})
    assert redactor.text("header was tok-0123456789 ok") == "header was [REDACTED] ok"
