"""Who is calling, and whether they may: bearer API keys with scopes, rate-limited.

The API takes `Authorization: Bearer <key>`; the web UI takes the same key from its
login cookie (a browser's EventSource cannot send a header). Without any key on the bus
the gateway is open, and binds 127.0.0.1 only (`crewbus.httpapi.server`). Once a key has
been seen, every request needs one, until the process ends: revoking the last key never
opens a gateway again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from crewbus.httpapi.apikeys import KeyStore
from crewbus.httpapi.problems import ProblemError
from crewbus.httpapi.ratelimit import RateLimiter
from crewbus_contracts.apikeys import ApiKey, Scope

COOKIE = "crewbus_key"
OPEN_RECHECK_S = 1.0
"""How often an open gateway looks whether a key was created (then it closes)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The key making the request; None when the gateway is open (no keys)."""

    key: ApiKey | None

    @property
    def name(self) -> str:
        return self.key.name if self.key is not None else "local"

    def may(self, scope: Scope) -> bool:
        return self.key is None or "admin" in self.key.scopes or scope in self.key.scopes


class Gate:
    """Decides whether keys are needed and checks them; one per gateway process."""

    def __init__(self, store: KeyStore, default_rate: int, *, always_closed: bool = False,
                 connected: Callable[[], bool] = lambda: True):
        self.store = store
        self.connected = connected
        self.default_rate = default_rate
        self.limiter = RateLimiter()
        self._closed = always_closed
        self._checked_at = 0.0

    async def closed(self) -> bool:
        if (not self._closed and time.monotonic() - self._checked_at > OPEN_RECHECK_S
                and self.connected()):  # while NATS is away, the last answer stands
            self._closed = await self.store.any()
            self._checked_at = time.monotonic()
        return self._closed

    async def caller(self, key: str | None) -> Caller:
        if not await self.closed():
            return Caller(None)
        if not key:
            raise ProblemError("unauthorized", "an API key is needed: send "
                               "`Authorization: Bearer <key>` (create one with "
                               "`crewbus apikey create NAME`)",
                               headers={"WWW-Authenticate": 'Bearer realm="crewbus"'})
        if not self.connected():
            raise ProblemError("unavailable", "not connected to NATS right now, so keys "
                               "cannot be checked", headers={"Retry-After": "1"})
        record = await self.store.verify(key)
        if record is None:
            raise ProblemError("unauthorized", "this API key is not valid (revoked, or "
                               "never issued)",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        wait_s = self.limiter.take(record.key_id, record.rate_per_minute or self.default_rate)
        if wait_s is not None:
            raise ProblemError("rate_limited", f"key {record.name!r} is over its rate of "
                               f"{record.rate_per_minute or self.default_rate} requests a "
                               f"minute; retry in {wait_s}s",
                               headers={"Retry-After": str(wait_s)}, retry_after_s=wait_s)
        return Caller(record)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(scope: Scope) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency: the API caller, refused unless its key has `scope` (or `admin`)."""

    async def dependency(request: Request) -> Caller:
        caller = await request.app.state.gate.caller(bearer(request))
        return _allowed(caller, scope)

    return dependency


def require_ui(scope: Scope) -> Callable[[Request], Awaitable[Caller]]:
    """Like `require`, reading the key from the UI's login cookie."""

    async def dependency(request: Request) -> Caller:
        caller = await request.app.state.gate.caller(request.cookies.get(COOKIE))
        return _allowed(caller, scope)

    return dependency


def _allowed(caller: Caller, scope: Scope) -> Caller:
    if not caller.may(scope):
        raise ProblemError("forbidden", f"key {caller.name!r} lacks the `{scope}` scope "
                           "(it has " + ", ".join(caller.key.scopes if caller.key else []) + ")")
    return caller

