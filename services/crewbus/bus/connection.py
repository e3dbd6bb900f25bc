"""Connecting to NATS: wait for it at start-up, reconnect forever afterwards."""

from __future__ import annotations

import logging
import ssl
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
    options = connect_options(settings)
    refusals = Refusals(settings.nats_url, give_up_after_s=settings.connect_timeout_s)

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
                error_cb=refusals.on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=_log_reconnect,
                **options,
            )
            opened.append(nc)
            refusals.connecting = False
            return nc
        except (NatsAuthRefusedError, NatsUnreachableError):
            raise  # from the error callback: wrong credentials, an untrusted server, or late
        except Exception as exc:  # nats raises several types for "not there yet"
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
    options = connect_options(command_settings(identity, creds_dir))
    refusals = Refusals(url, warn=False)
    _command_refusals.append(refusals)
    nc = await nats.connect(
        server_list(url), connect_timeout=5, max_reconnect_attempts=4, reconnect_time_wait=0.5,
        error_cb=refusals.on_error, **options,
    )
    refusals.connecting = False
    return nc


class Refusals:
    """What the server refused a connection, as its error callback hears it: the
    credentials (the connection then fails), or a publish or subscription (a permissions
    violation: the request simply gets no answer, so this is the only place it shows).
    Violations are logged as warnings; they name subjects, never credentials."""

    def __init__(self, url: str, warn: bool = True, give_up_after_s: float | None = None
                 ) -> None:
        self.url = url
        self.connecting = True
        self.started = time.monotonic()
        self.give_up_after_s = give_up_after_s
        self.violation: str | None = None
        self.warn = warn

    async def on_error(self, exc: Exception) -> None:
        if is_auth_refusal(exc):
            if self.connecting:  # raised out of nats.connect, which would retry forever
                raise NatsAuthRefusedError(self.url, exc)
            log.warning("NATS refused this process's credentials on reconnecting (were they "
                        "rotated?); retrying")
        elif self.connecting and self._gives_up(exc):
            # nats.connect retries forever (max_reconnect_attempts=-1): this is how it stops.
            raise NatsUnreachableError(self.url, time.monotonic() - self.started, exc)
        elif "permissions violation" in str(exc).lower():
            self.violation = str(exc).removeprefix("nats: ")
            log.log(logging.WARNING if self.warn else logging.DEBUG, "NATS refused: %s",
                    self.violation)
        else:
            log.debug("nats: %s", exc)


    def _gives_up(self, exc: Exception) -> bool:
        """A server whose certificate we don't trust won't become trusted; anything else
        is worth retrying until the start-up timeout."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return True
        waited = time.monotonic() - self.started
        return self.give_up_after_s is not None and waited > self.give_up_after_s


_command_refusals: list[Refusals] = []


def command_violation() -> str | None:
    """The last permissions violation of this process's command connections (a CLI process
    runs one command): the CLI names it in its one error line instead of a bare timeout."""
    found = [r.violation for r in _command_refusals if r.violation]
    return found[-1] if found else None


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


async def _log_reconnect() -> None:
    log.info("reconnected to NATS")


def core_client(js: JetStreamContext) -> NATS:
    """The connection under a JetStream context, for core publishes and subscriptions that
    need no JetStream ack (nats-py keeps it private; this is the one place that reaches it)."""
    nc: NATS = js._nc
    return nc
