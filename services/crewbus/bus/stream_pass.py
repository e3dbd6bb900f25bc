"""One pass over what a stream holds for a filter, ended by the server's counts, with a
consumer of its own that is deleted afterwards.

Not nats-py's watcher or ordered consumer: the watcher signals "all delivered" from the
messages it has *parsed*, so when the server has sent them all before it answers the
watcher's consumer-info request, the signal comes first and a reader stops with nothing;
and both leave their consumer on the server for minutes after the reader is done. Here a
pass ends on a message with nothing pending after it, or, when deliveries pause, once the
server says nothing is pending and every message it delivered has been read (a message
that expires mid-pass, `purge(msg_ttl=...)`, is never delivered).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo

PASS_IDLE_S = 0.5
"""How long a pass waits for a message before it asks the server what is still pending
(a message that expired mid-pass never arrives)."""
PASS_CONSUMER_IDLE_S = 30.0
"""A pass's consumer that its reader could not delete (a lost connection) goes by then."""


async def read_pass(js: JetStreamContext, stream: str, config: ConsumerConfig,
                    take: Callable[[Msg], bool], timeout_s: float) -> None:
    """Hand `take` every message a consumer of `config` (filter and deliver policy) has at
    its start, in order; `take` returns False to end the pass early. Raises TimeoutError
    when the pass has not ended by `timeout_s`."""
    nc = js._nc
    read = 0
    ended = anyio.Event()

    async def on_message(msg: Msg) -> None:
        nonlocal read
        if ended.is_set():
            return
        read += 1
        if not take(msg) or msg.metadata.num_pending == 0:
            ended.set()

    deliver = nc.new_inbox()
    sub = await nc.subscribe(deliver, cb=on_message)
    config.name = nc._nuid.next().decode()
    config.deliver_subject = deliver
    config.ack_policy = AckPolicy.NONE
    config.inactive_threshold = PASS_CONSUMER_IDLE_S
    config.mem_storage, config.num_replicas = True, 1
    created = False
    try:
        with anyio.fail_after(timeout_s):
            info = await js.add_consumer(stream, config)
            created = True
            while not (ended.is_set() or _all_read(info, read)):
                with anyio.move_on_after(PASS_IDLE_S):
                    await ended.wait()
                if not ended.is_set():
                    info = await js.consumer_info(stream, config.name)
    finally:
        ended.set()  # what still arrives is not this pass's
        with anyio.CancelScope(shield=True):
            await _close_quietly(js, stream, config.name if created else None, sub)


def _all_read(info: ConsumerInfo, read: int) -> bool:
    """Whether a pass that has read `read` messages has read all the consumer will send."""
    delivered = info.delivered.consumer_seq if info.delivered else 0
    return info.num_pending == 0 and read >= (delivered or 0)


async def _close_quietly(js: JetStreamContext, stream: str, consumer: str | None,
                         sub: Subscription) -> None:
    """The pass's consumer and inbox, gone now rather than after the idle threshold."""
    try:
        await sub.unsubscribe()
        if consumer is not None:
            await js.delete_consumer(stream, consumer)
    except Exception:  # the consumer expires on its own anyway
        pass
