"""A stopping service ends the tasks it leaves behind even when one swallows a cancellation.

Each case runs in a loop of its own, as a service's process does (the test runner's loop
has tasks of its own that must live)."""

from __future__ import annotations

import asyncio
import time

from crewbus.leftover_tasks import cancel_leftover_tasks


async def _retries_forever(swallowed: list[int]) -> None:
    """nats-py's reconnect loop as Python 3.11's wait_for lets it behave: the first
    cancellation is lost (seen as the refused connect it met), and the loop retries."""
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if not swallowed:
                swallowed.append(1)
                continue
            raise


def test_a_task_that_swallows_one_cancellation_still_ends() -> None:
    swallowed: list[int] = []

    async def stopping() -> tuple[int, bool, float]:
        task = asyncio.get_running_loop().create_task(_retries_forever(swallowed))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        left = await cancel_leftover_tasks(grace_s=10)
        return left, task.done(), time.monotonic() - started

    left, done, took = asyncio.run(stopping())
    assert (left, done, swallowed) == (1, True, [1])
    assert took < 5


def test_nothing_left_is_nothing_to_do() -> None:
    assert asyncio.run(cancel_leftover_tasks(grace_s=1)) == 0
