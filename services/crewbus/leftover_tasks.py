"""Ending, for sure, the asyncio tasks a service leaves behind when it stops.

`asyncio.run` cancels leftover tasks once and waits for them. On Python 3.11
`asyncio.wait_for` swallows a cancellation that arrives as its inner future finishes, and
nats-py's reconnect loop runs its connect attempts under it and retries after any
exception: a connection whose server went away first (a kill -9 of `crewbus up`
SIGTERMs nats-server and every service at once, and `drain()` refuses a reconnecting
connection) then retries forever, and the stopped service never exits (memory and gateway
seen alive 90 s after "stopped", on a loaded machine). Cancelling again until they end
stops them.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

LEFTOVER_GRACE_S = 5.0
"""How long leftover tasks get to end; asyncio.run waits for what is left after that."""
RECANCEL_EVERY_S = 0.1


async def cancel_leftover_tasks(grace_s: float = LEFTOVER_GRACE_S) -> int:
    """Cancel every other task of this loop, again and again, until all have ended (or
    `grace_s` has passed). Returns how many were left at the start."""
    current = asyncio.current_task()
    deadline = time.monotonic() + grace_s
    first: int | None = None
    while True:
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if first is None:
            first = len(left)
        if not left:
            return first
        if time.monotonic() > deadline:
            log.warning("%d tasks did not end on cancellation: %s", len(left),
                        ", ".join(t.get_name() for t in left))
            return first
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=RECANCEL_EVERY_S)
