"""McpSettings: where the MCP servers file is and how the executor treats its servers.

The servers themselves are declared in a file (`CREWBUS_MCP_SERVERS`), in the `mcpServers`
shape desktop clients use; see `crewbus_agents.mcp_tools.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import msgspec

from crewbus.settings import data_dir

ENV_PREFIX = "CREWBUS_MCP_"


class McpSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The executor's MCP client: one file of servers, and the limits around them."""

    env_shown_defaults: ClassVar[dict[str, str]] = {
        "servers": "(none)", "server_logs": "`$CREWBUS_DATA_DIR/mcp-logs`"}

    servers: str = ""
    """A TOML or JSON file of MCP servers (`mcpServers` blocks); empty means none."""
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """How long the executor waits for a server to start and answer its handshake."""
    call_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """Bound on one MCP tool call, unless the server's own `timeout` says otherwise."""
    restart_backoff_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """First wait before restarting a server that died or could not be reached; doubles on
    each failure in a row."""
    restart_backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Longest wait between two restarts of a server."""
    server_logs: str = ""
    """Directory of the stdio servers' stderr (`<name>.stderr.log`); empty means
    `<data dir>/mcp-logs`."""

    def server_logs_path(self) -> Path:
        return Path(self.server_logs).resolve() if self.server_logs else data_dir() / "mcp-logs"
