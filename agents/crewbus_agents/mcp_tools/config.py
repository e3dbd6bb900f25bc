"""The MCP servers file: the `mcpServers` blocks users already write for desktop clients.

TOML or JSON, chosen by the file's suffix (`.toml`, else JSON):

    [mcpServers.time]                      # stdio: crewbus starts the process
    command = "mcp-server-time"
    args = ["--local-timezone", "UTC"]
    env = { TZ = "UTC" }

    [mcpServers.search]                    # streamable HTTP: crewbus connects to a URL
    url = "https://search.example/mcp"
    headers = { Authorization = "Bearer ${SEARCH_TOKEN}" }
    allow = ["query"]                      # only these tools (default: all)
    timeout = 20                           # seconds per call
    approval = "auto"                      # auto | always | never

`${NAME}` (or `${env:NAME}`) in `env`, `headers`, `args` and `url` is replaced by the
variable's value when the file is loaded, so secrets stay in the environment, not in the
file; a variable that is not set is an error naming it. Unknown keys are errors too (a
misspelt `allow` must not silently allow everything).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from crewbus_agents.tools.redact import SECRET_NAME

ApprovalMode = Literal["auto", "always", "never"]
"""`auto`: the tool's annotations decide (see `policy.needs_approval`)."""

SERVER_NAME = re.compile(r"^[A-Za-z0-9-]{1,32}$")
"""A server's name becomes the prefix of its tools' names (`time__get_current_time`), so
it must be valid in a model's function name and must not contain the `__` separator."""

_VARIABLE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


class McpConfigError(ValueError):
    """The servers file cannot be used; the message names the file, server and field."""


class McpServerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One server: `command` (stdio) or `url` (streamable HTTP), and crewbus's policy."""

    type: Literal["stdio", "http", "streamable-http", "streamableHttp"] | None = None
    """Optional; inferred from `command` / `url`."""
    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    """Variables for a stdio server, added to a minimal environment (PATH, HOME, USER...):
    the executor's own secrets are not passed on unless named here."""
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    allow: list[str] | None = None
    """The server's tools (by their own names) crewbus offers; None offers all of them."""
    deny: list[str] = []
    """Tools never offered, even when allowed."""
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Seconds per call; default `CREWBUS_MCP_CALL_TIMEOUT_S`."""
    approval: ApprovalMode = "auto"
    trusted_tools: list[str] = []
    """Tools of this server that never wait for approval, whatever their annotations."""
    disabled: bool = False

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command else "http"

    def offers(self, tool: str) -> bool:
        """Whether the allow/deny lists let the model see `tool`."""
        return tool not in self.deny and (self.allow is None or tool in self.allow)



class McpServers(msgspec.Struct, kw_only=True, frozen=True):
    """The enabled servers of a file, and the values traces must never show."""

    servers: dict[str, McpServerConfig] = {}
    secrets: list[str] = []
    """Values of headers, of server environment variables and of `${VAR}`s whose names look
    secret (`Authorization`, `X-API-Key`, `GITHUB_TOKEN`...), as the redactor judges names."""


def load_servers(path: str | Path, env: Mapping[str, str] | None = None) -> McpServers:
    """The enabled servers of the file at `path`, with `${VAR}`s substituted."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise McpConfigError(f"MCP servers file {file}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise McpConfigError(f"MCP servers file {file} is not valid "
                             f"{'TOML' if file.suffix == '.toml' else 'JSON'}: {exc}") from None
    return parse_servers(raw, str(file), os.environ if env is None else env)


def parse_servers(raw: object, where: str, env: Mapping[str, str]) -> McpServers:
    """The enabled servers in a decoded file (`{"mcpServers": {name: {...}}}`)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("mcpServers", {}), dict):
        raise McpConfigError(f"{where}: expected a table `mcpServers` of servers by name")
    servers: dict[str, McpServerConfig] = {}
    secrets: set[str] = set()
    for name, block in raw.get("mcpServers", {}).items():
        config = _server(name, block, where, env, secrets)
        if not config.disabled:
            servers[name] = config
            named = (*config.headers.items(), *config.env.items())
            secrets.update(v for k, v in named if SECRET_NAME.search(k))
    return McpServers(servers=servers, secrets=sorted(s for s in secrets if len(s) >= 6))


def _server(
    name: str, block: object, where: str, env: Mapping[str, str], secrets: set[str]
) -> McpServerConfig:
    here = f"{where}: server {name!r}"
    if not SERVER_NAME.match(name):
        raise McpConfigError(f"{here}: a name must match {SERVER_NAME.pattern} "
                             "(it prefixes its tools' names)")
    try:
        config = msgspec.convert(_substitute(block, here, env, secrets), McpServerConfig)
    except msgspec.ValidationError as exc:
        raise McpConfigError(f"{here}: {exc}") from None
    if bool(config.command) == bool(config.url):
        raise McpConfigError(f"{here}: give exactly one of `command` (stdio) or `url` (HTTP)")
    if config.type == "stdio" and not config.command:
        raise McpConfigError(f"{here}: type stdio needs a `command`")
    if config.type not in (None, "stdio") and not config.url:
        raise McpConfigError(f"{here}: type {config.type} needs a `url`")
    if config.url and not re.match(r"^https?://", config.url):
        raise McpConfigError(f"{here}: `url` must start with http:// or https://")
    return config


def _substitute(
    value: object, here: str, env: Mapping[str, str], secrets: set[str]
) -> object:
    """`value` with every `${VAR}` in its strings replaced from `env` (the values noted)."""
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            found = env.get(match.group(1))
            if found is None:
                raise McpConfigError(f"{here}: variable {match.group(1)} is not set")
            if SECRET_NAME.search(match.group(1)):
                secrets.add(found)
            return found
        return _VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, here, env, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, here, env, secrets) for v in value]
    return value
