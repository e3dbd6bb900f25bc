"""Running one service process: connect, ensure the topology, run until told to stop."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServiceUnavailableError

from crewbus.auth.options import manages_topology
from crewbus.bus.connection import connect
from crewbus.bus.topology import ensure_topology
from crewbus.bus.worker import Shutdown, shutdown_scope
from crewbus.settings import BusSettings

log = logging.getLogger(__name__)


@asynccontextmanager
async def bus(settings: BusSettings, name: str) -> AsyncIterator[NATS]:
    """A connection with the streams, consumers and buckets in place (made here, unless this
    identity may not: then `crewbus up` or the operator made them); drained on exit."""
    nc = await connect(settings, name)
    try:
        if manages_topology(settings):
            await _ensure_topology_patiently(nc, settings)
        yield nc
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await nc.drain()
            except Exception as exc:
                log.debug("drain: %s", exc)


async def _ensure_topology_patiently(nc: NATS, settings: BusSettings) -> None:
    """JetStream may still be starting (or busy): keep trying within the connect timeout."""
    started = time.monotonic()
    while True:
        try:
            await ensure_topology(nc.jetstream(timeout=10), settings)
            return
        except (NatsTimeoutError, TimeoutError, ServiceUnavailableError) as exc:
            if time.monotonic() - started > settings.connect_timeout_s:
                raise
            log.info("JetStream not ready (%r); retrying", exc)
            await anyio.sleep(0.5)


async def run_until_signalled(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` until it ends or SIGINT/SIGTERM arrives, then stop cleanly.

    The first signal drains: pull workers stop fetching and hand back the work they cannot
    finish within the grace (`crewbus.bus.worker.Shutdown`), then `main` is cancelled. A
    second SIGINT (Ctrl-C again) stops at once; any other repeat is ignored, because
    `crewbus up` sends SIGTERM beside the terminal's SIGINT to the whole group, and the two
    may arrive in either order.
    """
    shutdown = Shutdown()
    seen: set[int] = set()
    # The handlers stay installed until every task has finished its cleanup: a SIGTERM
    # meeting Python's default handler would kill the process while it closes its store.
    with (anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
          shutdown_scope(shutdown)):
        async with anyio.create_task_group() as tg:

            async def stop_when_drained() -> None:
                with anyio.move_on_after(shutdown.deadline_s + 1.0):
                    await shutdown.drained()
                tg.cancel_scope.cancel()

            async def watch_signals() -> None:
                async for signum in signals:
                    again = signum in seen
                    seen.add(signum)
                    if not shutdown.requested.is_set():
                        log.info("%s: stopping after the work in flight (Ctrl-C again to "
                                 "stop at once)", signal.Signals(signum).name)
                        shutdown.request()
                        tg.start_soon(stop_when_drained)
                    elif again and signum == signal.SIGINT:
                        log.info("SIGINT again: stopping now")
                        tg.cancel_scope.cancel()
                        return

            async def run_main() -> None:
                await main()
                tg.cancel_scope.cancel()

            tg.start_soon(watch_signals)
            tg.start_soon(run_main)
    # Stopped. Leaving the receiver put SIGTERM back to its default action: a late repeat
    # (`crewbus up` sends SIGTERM beside the terminal's SIGINT) would kill the process on
    # its way out, before it logs that it stopped.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
