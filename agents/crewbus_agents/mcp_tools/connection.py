"""One MCP server as the executor sees it: connected in the background, restarted with
backoff when it dies, its tool list kept fresh, called by its tools' own names.

The SDK's `Client` negotiates the protocol era (`mode="auto"`): it probes
`server/discover` (2026-07-28) and falls back to the `initialize` handshake, so servers
built on either generation of the SDK work. A call while the server is down or
restarting fails at once with `ToolUnavailable` (the step is retried later), never waits
on a dead process; a call the server does not answer in time fails with `ToolFailed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskStatus
from mcp import Client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from crewbus_agents.mcp_tools.config import McpServerConfig
from crewbus_agents.mcp_tools.settings import McpSettings
from crewbus_agents.mcp_tools.transport import WatchedTransport
from crewbus_agents.tools.errors import ToolFailed, ToolUnavailable

log = logging.getLogger(__name__)

State = Literal["starting", "ready", "down", "stopped"]
_PAGES = 100
"""Most pages of a tools/list walk: a server whose cursor never ends cannot hang us."""
_BROKEN = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
           anyio.EndOfStream, httpx2.TransportError)
"""Errors that mean the connection is gone (the server died, the network dropped)."""


class McpConnection:
    """The supervisor of one server (`run`) and the way to call its tools (`call`)."""

    def __init__(self, name: str, config: McpServerConfig, settings: McpSettings,
                 client_name: str = "crewbus", log_dir: Path | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.stderr.log" if log_dir and config.command else None
        """A stdio server's stderr, kept out of the executor's own log."""
        self.config = config
        self.settings = settings
        self.client_name = client_name
        self.state: State = "starting"
        self.reason = "starting"
        self.tools: dict[str, types.Tool] = {}
        """The tools the allow/deny lists offer, by the server's own names (last known,
        kept while the server restarts)."""
        self.protocol_version: str | None = None
        self.server_version: str | None = None
        self.starts = 0
        self.on_change: Callable[[], None] = lambda: None
        """Called after the tool list or the state changed."""
        self.attempted = anyio.Event()
        """Set after the first attempt to connect, whatever its result."""
        self._client: Client | None = None
        self._transport: WatchedTransport | None = None
        self._broken = anyio.Event()
        self._refresh = anyio.Event()

    @property
    def call_timeout_s(self) -> float:
        return self.config.timeout or self.settings.call_timeout_s

    async def run(self) -> None:
        """Connect, and reconnect after every loss with a doubling backoff, until cancelled."""
        failures = 0
        try:
            while True:
                self.starts += 1
                reason, was_ready = await self._attempt()
                self._client = None
                self._set("down", reason)
                self.attempted.set()
                failures = 1 if was_ready else failures + 1
                delay = min(self.settings.restart_backoff_s * 2 ** (failures - 1),
                            self.settings.restart_backoff_max_s)
                log.warning("MCP server %s is down (%s); restarting in %.1fs",
                            self.name, reason, delay)
                await anyio.sleep(delay)
                self._set("starting", f"restarting after: {reason}")
        finally:
            self._client = None
            self._set("stopped", "the executor is stopping")

    async def call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Call `tool` (the server's name for it); ToolUnavailable when the server is not
        connected or the connection breaks, ToolFailed when it refuses or is too slow."""
        client = self._client
        if client is None or self.state != "ready":
            raise ToolUnavailable(f"MCP server {self.name!r} is {self.state} ({self.reason})")
        timeout = self.call_timeout_s
        try:
            with anyio.fail_after(timeout + 1):
                return await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except TimeoutError:
            raise self._too_slow(timeout) from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise self._too_slow(timeout) from None
            if exc.code == CONNECTION_CLOSED:
                self._broken.set()
                raise ToolUnavailable(f"MCP server {self.name!r} closed the connection "
                                      "during the call; it is being restarted") from None
            raise ToolFailed(f"MCP server {self.name!r} refused the call: {exc}") from None
        except _BROKEN as exc:
            self._broken.set()
            raise ToolUnavailable(f"MCP server {self.name!r} could not be reached during the "
                                  f"call ({_describe(exc)}); it is being reconnected") from None

    def _too_slow(self, timeout: float) -> ToolFailed:
        return ToolFailed(f"MCP server {self.name!r} did not answer within {timeout:g}s")

    async def _attempt(self) -> tuple[str, bool]:
        """One connection, from start to loss: why it ended, and whether it got ready."""
        ready = anyio.Event()
        reason = "the connection closed"
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as attempt:
                tg.start_soon(self._deadline, attempt, ready)
                try:
                    reason = await self._connected(ready)
                except Exception as exc:
                    reason = _describe(exc)
                    last = self._transport.last_log_line() if self._transport else None
                    if last:
                        reason += f" (its last log line: {last})"
            tg.cancel_scope.cancel()
        if attempt.cancelled_caught and not ready.is_set():
            reason = (f"no answer to the handshake within {self.settings.connect_timeout_s:g}s")
        return reason, ready.is_set()

    async def _deadline(self, attempt: anyio.CancelScope, ready: anyio.Event) -> None:
        with anyio.move_on_after(self.settings.connect_timeout_s):
            await ready.wait()
        if not ready.is_set():
            attempt.cancel()

    async def _connected(self, ready: anyio.Event) -> str:
        transport = WatchedTransport(self.name, self.config, self.settings.connect_timeout_s,
                                     self.call_timeout_s, self.log_path)
        self._transport = transport
        self._broken = anyio.Event()
        client = Client(
            transport, mode="auto", read_timeout_seconds=self.settings.connect_timeout_s,
            message_handler=self._on_message, cache=None,
            client_info=types.Implementation(name=self.client_name, version="1"))
        async with client:
            self.protocol_version = client.protocol_version
            info = client.server_info
            self.server_version = f"{info.name} {info.version}".strip() if info else None
            async with anyio.create_task_group() as tg:
                # Listening before the first listing: no change can fall between the two.
                await tg.start(self._listen, client)
                await self._load_tools(client)
                self._client = client
                self._set("ready", f"connected ({self.protocol_version})")
                ready.set()
                self.attempted.set()
                tg.start_soon(self._refresher, client)
                async with anyio.create_task_group() as first:
                    first.start_soon(_set_when, transport.ended, first.cancel_scope)
                    first.start_soon(_set_when, self._broken, first.cancel_scope)
                tg.cancel_scope.cancel()
            self._client = None
        if not self.config.command:
            return "the connection was lost"
        last = transport.last_log_line()
        return "the server exited" + (f" (its last log line: {last})" if last else "")

    async def _load_tools(self, client: Client) -> None:
        found: dict[str, types.Tool] = {}
        cursor: str | None = None
        for _ in range(_PAGES):
            page = await client.list_tools(cursor=cursor)
            found.update((t.name, t) for t in page.tools if self.config.offers(t.name))
            cursor = page.next_cursor
            if cursor is None:
                break
        self.tools = found
        self.on_change()

    async def _on_message(self, message: Any) -> None:
        """Legacy-era servers announce a changed tool list spontaneously."""
        if isinstance(message, types.ToolListChangedNotification):
            self._refresh.set()

    async def _listen(
        self, client: Client, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Modern-era servers announce changes only on a `subscriptions/listen` stream;
        started once the server acknowledged it (or there is nothing to listen to)."""
        capability = client.server_capabilities.tools
        if (client.protocol_version not in MODERN_PROTOCOL_VERSIONS
                or capability is None or not capability.list_changed):
            task_status.started()
            return
        started = False
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                task_status.started()
                started = True
                async for _event in subscription:
                    self._refresh.set()
        except SubscriptionLost:
            self._broken.set()  # reconnect: re-list the tools and listen again
        except (ListenNotSupportedError, MCPError, TimeoutError, *_BROKEN) as exc:
            log.info("MCP server %s: no tool-list notifications (%s)", self.name, exc)
        if not started:
            task_status.started()

    async def _refresher(self, client: Client) -> None:
        while True:
            await self._refresh.wait()
            self._refresh = anyio.Event()
            try:
                await self._load_tools(client)
                log.info("MCP server %s: tool list refreshed (%d tools)", self.name,
                         len(self.tools))
            except (MCPError, TimeoutError, *_BROKEN) as exc:
                log.warning("MCP server %s: could not refresh its tools: %s", self.name, exc)

    def _set(self, state: State, reason: str) -> None:
        self.state, self.reason = state, reason
        self.on_change()


async def _set_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _describe(exc: BaseException) -> str:
    """One line for an error that may have travelled through task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect ({exc})"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
