"""MCP servers as a tool source for the executor (the official `mcp` SDK's client).

Servers are declared in a file (`CREWBUS_MCP_SERVERS`, see `config`); `McpToolSource`
keeps one connection per server (`connection`) and offers their tools to the registry
as `<server>__<tool>`, with approval from their annotations (`policy`) and arguments
checked against their schemas before the call (`validation`).
"""

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
