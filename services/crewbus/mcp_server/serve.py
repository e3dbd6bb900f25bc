"""Running the MCP server: connected to the bus, over stdio or streamable HTTP, until the
client closes stdin (stdio) or a signal arrives."""

from __future__ import annotations

import logging

from crewbus.config import load_settings
from crewbus.mcp_server.server import build_server
from crewbus.runner import bus, run_until_signalled

log = logging.getLogger(__name__)


async def serve_mcp(
    nats_url: str | None, http_port: int | None = None, host: str = "127.0.0.1",
    by: str = "mcp",
) -> None:
    """Serve until stopped; stdio unless `http_port` is given. Nothing but MCP messages may
    go to stdout in stdio mode, so every log line goes to stderr."""
    settings = load_settings(nats_url=nats_url)

    async def main() -> None:
        async with bus(settings.bus, "crewbus-mcp") as nc:
            server = build_server(nc, by=by)
            if http_port is None:
                log.info("crewbus MCP server on stdio (NATS %s)", settings.bus.nats_url)
                await server.run_stdio_async()
            else:
                log.info("crewbus MCP server on http://%s:%d/mcp (NATS %s)", host, http_port,
                         settings.bus.nats_url)
                await server.run_streamable_http_async(host=host, port=http_port)

    await run_until_signalled(main)
