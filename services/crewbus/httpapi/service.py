"""The gateway as a service: its app, bound to its socket, ready to run."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import anyio
from fastapi import FastAPI
from nats.aio.client import Client as NATS

from crewbus.httpapi.access import access_line, choose_host, is_loopback
from crewbus.httpapi.app import GatewayConfig, create_app
from crewbus.httpapi.bus import Bus
from crewbus.httpapi.server import bind, serve
from crewbus.httpapi.settings import HttpSettings

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Call it to serve (until cancelled); `url` says where."""

    app: FastAPI
    sock: socket.socket
    keys_required: bool
    note: str = ""

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def __call__(self, *,
                       task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                       ) -> None:
        try:
            await serve(self.app, self.sock, task_status=task_status)
        finally:
            self.sock.close()


async def open_gateway(nc: NATS, http: HttpSettings, max_body_bytes: int,
                       max_trace_spans: int = 50_000) -> Gateway:
    """The gateway on `nc`, bound as `http` says (127.0.0.1 while no API key exists)."""
    bus = await Bus.open(nc, max_trace_spans)
    have_keys = await bus.keys.any()
    host, note = choose_host(http.host, have_keys)
    if note:
        log.warning("%s", note)
    sock = bind(host, http.port)
    config = GatewayConfig(http, max_body_bytes, bound_publicly=not is_loopback(host))
    gateway = Gateway(create_app(bus, config), sock, have_keys, note)
    log.info("gateway serves %s (%s)", gateway.url, access_line(have_keys))
    return gateway
