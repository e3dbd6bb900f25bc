"""The SDK's transports for one configured server, watched so a dead server is noticed.

A stdio server that exits ends its read stream; the SDK then fails pending calls, but an
idle connection gives no sign. `WatchedTransport` sets `ended` when the read stream
ends, so the connection's supervisor restarts the server at once instead of at the
next call.
"""

from __future__ import annotations

import sys
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import anyio
import httpx2
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from crewbus_agents.mcp_tools.config import McpServerConfig

Streams = tuple[Any, Any]


class _WatchedRead:
    """A read stream that reports its end (EOF or closed) on `ended`."""

    def __init__(self, inner: Any, ended: anyio.Event) -> None:
        self._inner = inner
        self._ended = ended

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended.set()
            raise
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedRead:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedRead:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:  # `last_context`, read by the SDK if present
        return getattr(self._inner, name)


class WatchedTransport(AbstractAsyncContextManager[Streams]):
    """The server's transport, with `ended` set once the server stops talking."""

    def __init__(self, name: str, config: McpServerConfig, connect_timeout_s: float,
                 call_timeout_s: float, log_path: Path | None = None) -> None:
        self.name = name
        self.config = config
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        self.log_path = log_path
        """Where a stdio server's stderr goes (its own log); the executor's stderr if None."""
        self.ended = anyio.Event()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Streams:
        async with AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._open(stack))
            self._stack = stack.pop_all()
        return _WatchedRead(read, self.ended), write

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.ended.set()
        return await self._stack.__aexit__(exc_type, exc, tb)

    def _open(self, stack: AsyncExitStack) -> AbstractAsyncContextManager[Streams]:
        config = self.config
        if config.command:
            params = StdioServerParameters(
                command=config.command, args=config.args, env=config.env or None,
                cwd=config.cwd)
            return stdio_client(params, errlog=self._errlog(stack))
        assert config.url is not None
        # No proxy or .netrc from the environment: the file says where the server is.
        http = httpx2.AsyncClient(
            headers=config.headers, trust_env=False,
            timeout=httpx2.Timeout(self.connect_timeout_s, read=self.call_timeout_s + 5))
        stack.push_async_callback(http.aclose)
        return streamable_http_client(config.url, http_client=http)

    def _errlog(self, stack: AsyncExitStack) -> TextIO:
        if self.log_path is None:
            return sys.stderr
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = stack.enter_context(self.log_path.open("a", encoding="utf-8"))
        return log

    def last_log_line(self) -> str | None:
        """The last line the server wrote to its stderr (why it exited, often)."""
        if self.log_path is None:
            return None
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return None
        found = [line.strip() for line in lines if line.strip()]
        return found[-1][:300] if found else None
