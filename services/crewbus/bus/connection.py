"""Connecting to NATS: wait for it at start-up, reconnect forever afterwards."""

from __future__ import annotations

import logging
import time

import anyio
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from crewbus.settings import BusSettings

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 2
"""nc.drain() on the way out waits at most this long (nats-py's default is 30 s); the pull
workers have handed their work back by then."""


def server_list(url: str) -> list[str]:
    """The servers of `CREWBUS_NATS_URL` / `--nats`: one URL, or a cluster's URLs separated
    by commas. nats-py tries them in turn and, once connected, also learns the cluster's
    other nodes from the server, so one reachable node is enough to start."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    return servers or [url]


class NatsUnreachableError(RuntimeError):
    """NATS did not answer within the start-up timeout."""

    def __init__(self, url: str, waited_s: float, cause: BaseException) -> None:
        super().__init__(f"NATS at {url} unreachable after {waited_s:.0f}s: {cause}")


async def connect(settings: BusSettings, name: str) -> NATS:
    """Connect, retrying until `connect_timeout_s`, so services can start in any order."""
    started = time.monotonic()
    delay = 0.1
    opened: list[NATS] = []

    async def on_disconnect() -> None:
        if opened and opened[0].is_closed:
            return  # our own close on the way out, not a lost server
        log.warning("disconnected from NATS; reconnecting")

    while True:
        try:
            nc = await nats.connect(
                server_list(settings.nats_url),
                name=name,
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                drain_timeout=DRAIN_TIMEOUT_S,
                error_cb=_log_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=_log_reconnect,
            )
            opened.append(nc)
            return nc
        except Exception as exc:  # nats raises several types for "not there yet"
            waited = time.monotonic() - started
            if waited > settings.connect_timeout_s:
                raise NatsUnreachableError(settings.nats_url, waited, exc) from exc
            log.info("waiting for NATS at %s (%s)", settings.nats_url, exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def connect_for_command(url: str) -> NATS:
    """A connection for one CLI command: it fails within about two seconds when NATS is not
    there (the CLI then says so in one line), and nats-py's own error log stays quiet."""
    return await nats.connect(
        server_list(url), connect_timeout=5, max_reconnect_attempts=4, reconnect_time_wait=0.5,
        error_cb=_log_error,
    )


async def _log_error(exc: Exception) -> None:
    log.debug("nats: %s", exc)


async def _log_reconnect() -> None:
    log.info("reconnected to NATS")


def core_client(js: JetStreamContext) -> NATS:
    """The connection under a JetStream context, for core publishes and subscriptions that
    need no JetStream ack (nats-py keeps it private; this is the one place that reaches it)."""
    nc: NATS = js._nc
    return nc
