"""MCP servers as a tool source for the executor (the official `mcp` SDK's client).

Servers are declared in a file (`CREWBUS_MCP_SERVERS`, see `config`); `McpToolSource`
keeps one connection per server (`connection`) and offers their tools to the registry
as `<server>__<tool>`, with approval from their annotations (`policy`) and arguments
checked against their schemas before the call (`validation`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crewbus.lazy import lazy_names

if TYPE_CHECKING:
    from crewbus_agents.mcp_tools.config import (
        McpConfigError,
        McpServerConfig,
        McpServers,
        load_servers,
    )
    from crewbus_agents.mcp_tools.connection import McpConnection
    from crewbus_agents.mcp_tools.naming import model_name
    from crewbus_agents.mcp_tools.policy import needs_approval
    from crewbus_agents.mcp_tools.results import McpToolError
    from crewbus_agents.mcp_tools.settings import McpSettings
    from crewbus_agents.mcp_tools.source import McpToolSource

_HOME = {
    **dict.fromkeys(("McpConfigError", "McpServerConfig", "McpServers", "load_servers"),
                    "config"),
    "McpConnection": "connection", "model_name": "naming", "needs_approval": "policy",
    "McpToolError": "results", "McpSettings": "settings", "McpToolSource": "source",
}
"""Where each name lives. Imported on first use: the settings tree imports
`mcp_tools.settings`, and every crewbus process would otherwise pay for the `mcp` SDK's
import (~1.5 CPU s) whether or not it has MCP servers."""


__getattr__ = lazy_names(__name__, _HOME)


__all__ = [
    "McpConfigError",
    "McpConnection",
    "McpServerConfig",
    "McpServers",
    "McpSettings",
    "McpToolError",
    "McpToolSource",
    "load_servers",
    "model_name",
    "needs_approval",
]
