"""JetStream publishes that ride out a stream's leader election on a NATS cluster.

When the node leading a stream dies, the stream has no leader for a few seconds (6 s seen
on a busy 2-core machine) and every publish to it fails with "no response from stream" or
a timeout. Failing the work for that would spend an agent's few deliveries on the bus's
trouble, not the work's, and dead-letter it; so a publish whose message has a
`Nats-Msg-Id` is repeated until `within_s`: JetStream stores it once even if an earlier
try did arrive and only its ack was lost.
"""

from __future__ import annotations

import logging
import time

import anyio
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

log = logging.getLogger(__name__)

LEADERLESS = (NoStreamResponseError, NoRespondersError, NatsTimeoutError,
              ServiceUnavailableError)
"""What a publish raises while its stream has no leader (or our node is going away)."""


async def publish_retrying(
    js: JetStreamContext, subject: str, payload: bytes, *, stream: str, msg_id: str,
    within_s: float, headers: dict[str, str] | None = None,
) -> PubAck:
    """`js.publish` with `Nats-Msg-Id: msg_id`, repeated while the stream is leaderless,
    for at most `within_s` seconds; then the last error is raised."""
    deadline = time.monotonic() + within_s
    delay = 0.1
    all_headers = {**(headers or {}), "Nats-Msg-Id": msg_id}
    while True:
        try:
            return await js.publish(subject, payload, stream=stream, headers=all_headers)
        except LEADERLESS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.info("publish to %s failed (%s); retrying in %.1fs", stream,
                     type(exc).__name__, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
