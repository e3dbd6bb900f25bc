"""Every configured MCP server as one tool source for the executor's registry.

`McpToolSource.running()` starts every server's connection with the executor (waiting
for each one's first attempt, so the first step already sees their tools) and stops them
with it. Its tools are built from the servers' current lists on every look, so a
list-changed notification reaches the next step without a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types

from crewbus_agents.mcp_tools.config import McpServers
from crewbus_agents.mcp_tools.connection import McpConnection
from crewbus_agents.mcp_tools.naming import SEPARATOR, model_name
from crewbus_agents.mcp_tools.policy import needs_approval
from crewbus_agents.mcp_tools.results import as_tool_result
from crewbus_agents.mcp_tools.settings import McpSettings
from crewbus_agents.mcp_tools.validation import ArgumentsCheck
from crewbus_agents.tools.errors import ToolUnavailable
from crewbus_agents.tools.registry import Tool

NO_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


class McpToolSource:
    """Tools of all servers, namespaced `<server>__<tool>`; see `ToolSource`."""

    def __init__(self, servers: McpServers, settings: McpSettings) -> None:
        self.servers = servers
        self.settings = settings
        logs = settings.server_logs_path()
        self.connections = {name: McpConnection(name, config, settings, log_dir=logs)
                            for name, config in servers.servers.items()}
        self._tools: dict[str, Tool] = {}
        self._version = -1
        self._changes = 0
        for connection in self.connections.values():
            connection.on_change = self._changed

    @asynccontextmanager
    async def running(self) -> AsyncIterator[McpToolSource]:
        """Every server connected (or tried once) inside, all stopped on the way out."""
        async with anyio.create_task_group() as tg:
            for connection in self.connections.values():
                tg.start_soon(connection.run)
            for connection in self.connections.values():
                await connection.attempted.wait()
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    def tools(self) -> Iterable[Tool]:
        return self._current().values()

    def find(self, name: str) -> Tool | None:
        """A known tool; or, under a configured server's prefix, a stand-in whose call says
        the server is not there (so the step is retried, not told the tool is unknown)."""
        found = self._current().get(name)
        if found is not None:
            return found
        server, sep, _ = name.partition(SEPARATOR)
        connection = self.connections.get(server)
        if not sep or connection is None or connection.state == "ready":
            return None
        return Tool(name=name, description="(server unavailable)", fn=_unavailable(connection),
                    args_type=None, wants_context=False, requires_approval=False,
                    parameters=NO_SCHEMA, server=server)

    def _changed(self) -> None:
        self._changes += 1

    def _current(self) -> dict[str, Tool]:
        if self._version != self._changes:
            self._version = self._changes
            self._tools = {t.name: t for c in self.connections.values() for t in _tools_of(c)}
        return self._tools


def _tools_of(connection: McpConnection) -> list[Tool]:
    return [_tool(connection, t) for t in connection.tools.values()]


def _tool(connection: McpConnection, spec: types.Tool) -> Tool:
    name = model_name(connection.name, spec.name)

    async def call(arguments: dict[str, Any]) -> Any:
        return as_tool_result(connection.name, await connection.call(spec.name, arguments))

    schema = spec.input_schema or NO_SCHEMA
    description = spec.description or spec.title or (
        spec.annotations.title if spec.annotations else None) or spec.name
    return Tool(
        name=name,
        description=f"{description} (MCP server {connection.name})",
        fn=call,
        args_type=None,
        wants_context=False,
        requires_approval=needs_approval(connection.config, spec.name, spec.annotations),
        parameters=schema,
        check_args=ArgumentsCheck(name, schema),
        server=connection.name,
        read_only=bool(spec.annotations and spec.annotations.read_only_hint is True),
    )


def _unavailable(connection: McpConnection) -> Any:
    async def call(arguments: Any) -> Any:
        raise ToolUnavailable(
            f"MCP server {connection.name!r} is {connection.state} ({connection.reason})")
    return call
