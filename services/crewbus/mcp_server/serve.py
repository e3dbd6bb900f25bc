"""Running the MCP server: connected to the bus, over stdio or streamable HTTP, until the
client closes stdin (stdio) or a signal arrives."""

from __future__ import annotations

import logging

import anyio
import msgspec

from crewbus.bus.connection import NatsUnreachableError, connect
from crewbus.config import load_settings
from crewbus.mcp_server.server import build_server
from crewbus.runner import run_until_signalled

log = logging.getLogger(__name__)


async def serve_mcp(
    nats_url: str | None, http_port: int | None = None, host: str = "127.0.0.1",
    by: str = "mcp",
) -> None:
    """Serve until stopped; stdio unless `http_port` is given. Nothing but MCP messages may
    go to stdout in stdio mode, so every log line goes to stderr. NATS must answer within
    `CREWBUS_CONNECT_TIMEOUT_S` (an IDE starting this should hear at once that crewbus is
    not running); once connected, the connection is kept through NATS restarts."""
    from crewbus.auth.options import command_settings
    from crewbus.auth.permissions import MCP

    settings = load_settings(nats_url=nats_url)
    # As `mcp`: CREWBUS_NATS_CREDS, else the file `crewbus up` made under the data dir.
    bus = msgspec.structs.replace(settings.bus, nats_creds=command_settings(MCP).nats_creds)
    waited = bus.connect_timeout_s
    try:
        with anyio.fail_after(waited):
            nc = await connect(bus, "crewbus-mcp")
    except TimeoutError as exc:
        raise NatsUnreachableError(settings.bus.nats_url, waited, exc) from None

    async def main() -> None:
        server = build_server(nc, by=by)
        if http_port is None:
            log.info("crewbus MCP server on stdio (NATS %s)", settings.bus.nats_url)
            await server.run_stdio_async()
        else:
            log.info("crewbus MCP server on http://%s:%d/mcp (NATS %s)", host, http_port,
                     settings.bus.nats_url)
            await server.run_streamable_http_async(host=host, port=http_port)

    try:
        await run_until_signalled(main)
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()
