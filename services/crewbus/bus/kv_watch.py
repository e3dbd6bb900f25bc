"""A KV watch whose "caught up" marker comes after the values the bucket held at its start.

nats-py's watcher puts its None marker ("all delivered") first when its consumer-info
request says nothing is pending and it has not *parsed* any message yet, which happens
when the server has sent every value but its answer to that request arrives first: a
reader then takes the bucket for empty (or a key for absent) until the values follow.
Here the marker is decided from the server's counts: right away when the server says it
had nothing to deliver, else after the entry it delivered with nothing pending behind it.
"""

from __future__ import annotations

import time

from nats.js.kv import KeyValue


class KeyWatch:
    """Entries as nats-py's watcher gives them, with one None once caught up."""

    def __init__(self, watcher: KeyValue.KeyWatcher, nothing_to_deliver: bool) -> None:
        self._watcher = watcher
        self._marker_due = nothing_to_deliver
        self._caught_up = False

    @classmethod
    async def start(cls, kv: KeyValue, keys: str) -> KeyWatch:
        watcher = await kv.watch(keys)
        try:
            info = await watcher._sub.consumer_info()
        except BaseException:
            await watcher.stop()
            raise
        delivered = info.delivered.consumer_seq if info.delivered else 0
        return cls(watcher, info.num_pending == 0 and not delivered)

    async def updates(self, timeout: float | None) -> KeyValue.Entry | None:
        """The next entry, or the marker: nats.errors.TimeoutError after `timeout` s (None:
        no limit), StopAsyncIteration once stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._marker_due:
                self._marker_due, self._caught_up = False, True
                return None
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            entry = await self._watcher.updates(timeout=left)
            if isinstance(entry, KeyValue.Entry):
                if not self._caught_up and entry.delta == 0:
                    self._marker_due = True  # the last value the bucket held at the start
                return entry
            if entry is not None:  # nats-py's sentinel: stop() was called
                raise StopAsyncIteration
            # nats-py's own marker, maybe early: ours comes from the counts above

    def __aiter__(self) -> KeyWatch:
        return self

    async def __anext__(self) -> KeyValue.Entry | None:
        return await self.updates(timeout=None)

    async def stop(self) -> None:
        await self._watcher.stop()
