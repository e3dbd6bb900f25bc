"""Serving the app under uvicorn inside this process's event loop, on a socket we bind.

Binding: with no API key on the bus the gateway is open, so it binds 127.0.0.1 whatever
`CREWBUS_HTTP_HOST` says, and logs that it did. Signals stay with crewbus's runner
(`run_until_signalled`): uvicorn's own handlers would replace them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import anyio
import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 2.0
"""Open streams get this long to end before uvicorn cancels them."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the runner owns SIGINT/SIGTERM
        yield


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every accepted connection. Without it a response's small writes wait on
    # the client's delayed ACK: ~40 ms a request (measured by bench/gateway.py).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(app: FastAPI, sock: socket.socket, *,
                task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; then stop accepting, give open streams SHUTDOWN_GRACE_S to
    end, and return. `task_status.started()` once the socket accepts requests."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
                            timeout_keep_alive=30)
    server = _Server(config)
    stopped = anyio.Event()

    async def run() -> None:
        # Shielded: a cancel reaches uvicorn as `should_exit`, so it shuts down in order.
        with anyio.CancelScope(shield=True):
            try:
                await server.serve([sock])
            finally:
                stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not server.started:
            if stopped.is_set():
                raise RuntimeError("the HTTP server stopped while starting (see the log)")
            await anyio.sleep(0.01)
        task_status.started()
        try:
            await stopped.wait()
        finally:
            server.should_exit = True
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(SHUTDOWN_GRACE_S + 3):
                    await stopped.wait()
                server.force_exit = True
