"""Connecting to NATS: wait for it at start-up, reconnect forever afterwards."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from crewbus.auth.options import command_settings, connect_options
from crewbus.settings import BusSettings

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 2
"""nc.drain() on the way out waits at most this long (nats-py's default is 30 s); the pull
workers have handed their work back by then."""


class NatsUnreachableError(RuntimeError):
    """NATS did not answer within the start-up timeout."""

    def __init__(self, url: str, waited_s: float, cause: BaseException) -> None:
        super().__init__(f"NATS at {url} unreachable after {waited_s:.0f}s: {cause}")


async def connect(settings: BusSettings, name: str) -> NATS:
    """Connect, retrying until `connect_timeout_s`, so services can start in any order."""
    started = time.monotonic()
    delay = 0.1
    opened: list[NATS] = []
    options = connect_options(settings)

    async def on_disconnect() -> None:
        if opened and opened[0].is_closed:
            return  # our own close on the way out, not a lost server
        log.warning("disconnected from NATS; reconnecting")

    while True:
        try:
            nc = await nats.connect(
                settings.nats_url,
                name=name,
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                drain_timeout=DRAIN_TIMEOUT_S,
                error_cb=_log_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=_log_reconnect,
                **options,
            )
            opened.append(nc)
            return nc
        except Exception as exc:  # nats raises several types for "not there yet"
            if is_auth_refusal(exc):
                raise NatsAuthRefusedError(settings.nats_url, exc) from exc
            waited = time.monotonic() - started
            if waited > settings.connect_timeout_s:
                raise NatsUnreachableError(settings.nats_url, waited, exc) from exc
            log.info("waiting for NATS at %s (%s)", settings.nats_url, exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def connect_for_command(url: str, identity: str, creds_dir: Path | None = None) -> NATS:
    """A connection for one CLI command acting as `identity` (`crewbus.auth.permissions`),
    with that identity's file in `creds_dir` when given: it fails within about two seconds
    when NATS is not there (the CLI then says so in one line), and nats-py's own error log
    stays quiet."""
    try:
        return await nats.connect(
            url, connect_timeout=5, max_reconnect_attempts=4, reconnect_time_wait=0.5,
            error_cb=_log_error, **connect_options(command_settings(identity, creds_dir)),
        )
    except Exception as exc:
        if is_auth_refusal(exc):
            raise NatsAuthRefusedError(url, exc) from exc
        raise


class NatsAuthRefusedError(RuntimeError):
    """NATS refused this process's credentials (or their absence): retrying won't help."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"NATS at {url} refused the connection ({_auth_reason(cause)}): "
                         "set CREWBUS_NATS_CREDS to this identity's credentials file")


def is_auth_refusal(exc: BaseException) -> bool:
    return "authorization violation" in str(exc).lower() or \
        "authentication" in str(exc).lower()


def _auth_reason(exc: BaseException) -> str:
    return "authorization violation" if "authorization" in str(exc).lower() else \
        "authentication failed"


async def _log_error(exc: Exception) -> None:
    log.debug("nats: %s", exc)


async def _log_reconnect() -> None:
    log.info("reconnected to NATS")


def core_client(js: JetStreamContext) -> NATS:
    """The connection under a JetStream context, for core publishes and subscriptions that
    need no JetStream ack (nats-py keeps it private; this is the one place that reaches it)."""
    nc: NATS = js._nc
    return nc
