"""Answering NATS requests: whatever happens, the sender gets a reply and the service lives."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.msg import Msg

from crewbus.bus.codec import encode
from crewbus_contracts import ErrorReply

log = logging.getLogger(__name__)


async def answer(msg: Msg, handle: Callable[[bytes], Awaitable[msgspec.Struct]], what: str) -> None:
    """Reply with `handle`'s answer; an unexpected failure becomes an `internal_error` reply."""
    try:
        reply = await handle(msg.data)
    except Exception as exc:
        log.exception("%s failed", what)
        reply = ErrorReply(code="internal_error", message=f"{what} failed: {exc}")
    if msg.reply:
        await msg.respond(encode(reply))
