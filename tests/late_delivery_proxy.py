"""A loopback proxy in front of a real nats-server that makes one race happen every time:
a consumer's messages reach the client only after the answer to its consumer-info request.

That is what a busy machine sometimes does to nats-py's KV watcher (the server has sent
every value, so it answers "nothing pending", yet the client has not read them): the
watcher then signals "all delivered" before the values. The proxy holds the messages on
`held_prefix` subjects, holds the client's consumer-info requests until `expected` such
messages have come from the server (so the server has sent them all and says so), and
lets the held messages through `late_s` after the first answer to such a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

INFO_PREFIX = b"$JS.API.CONSUMER.INFO."


async def _frame(reader: asyncio.StreamReader) -> tuple[bytes, list[bytes]]:
    """One protocol frame (its whole bytes) and its control line's words."""
    line = await reader.readuntil(b"\r\n")
    words = line.split()
    frame = line
    if words and words[0].upper() in (b"PUB", b"HPUB", b"MSG", b"HMSG"):
        frame += await reader.readexactly(int(words[-1]) + 2)
    return frame, words


class LateDeliveryProxy:
    def __init__(self, upstream_port: int, held_prefix: str, expected: int,
                 late_s: float = 0.5) -> None:
        self.upstream_port = upstream_port
        self.late_s = late_s
        self.held_prefix = held_prefix.encode()
        self.expected = expected
        self.reordered = 0
        """Consumer-info answers that overtook held messages."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> LateDeliveryProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        return task

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
                     ) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        held: list[bytes] = []
        all_sent = asyncio.Event()
        info_replies: set[bytes] = set()

        async def upstream() -> None:  # client -> server
            while True:
                frame, words = await _frame(c_reader)
                if len(words) >= 4 and words[1].startswith(INFO_PREFIX) \
                        and not all_sent.is_set():
                    info_replies.add(words[2])
                    await all_sent.wait()
                s_writer.write(frame)
                await s_writer.drain()

        released = asyncio.Event()

        async def release_later() -> None:
            await asyncio.sleep(self.late_s)
            c_writer.write(b"".join(held))  # with no await before `released` is set
            held.clear()
            released.set()

        async def downstream() -> None:  # server -> client
            while True:
                frame, words = await _frame(s_reader)
                if not released.is_set() and len(words) >= 2 \
                        and words[1].startswith(self.held_prefix):
                    held.append(frame)
                    if len(held) >= self.expected:
                        all_sent.set()
                    continue
                c_writer.write(frame)
                if len(words) >= 2 and words[1] in info_replies and held \
                        and not self.reordered:
                    self.reordered += 1
                    self._start(release_later())
                await c_writer.drain()

        jobs = [self._start(upstream()), self._start(downstream())]
        try:
            await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            c_writer.close()
            s_writer.close()
