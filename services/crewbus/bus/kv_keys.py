"""The keys of a KV bucket, read from its stream's subjects in one request, and its values
in one pass.

Not `KeyValue.keys()`: nats-py answers that from a watcher that gives up after a few
seconds, which on a busy machine can list no keys at all. A stream-info request with a
subject filter lists every subject that holds a message (deleted and purged keys keep a
marker message: `KeyValue.get` tells them apart).
"""

from __future__ import annotations

import anyio
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

PASS_IDLE_S = 0.5
"""How long a values pass waits for a message before it asks the server what is still
pending (a message that expired mid-pass never arrives)."""
PASS_CONSUMER_IDLE_S = 30.0
"""A pass's consumer that its reader could not delete (a lost connection) goes by then."""


async def kv_keys(js: JetStreamContext, bucket: str, prefix: str = "") -> list[str]:
    """Every key of `bucket` that starts with `prefix` (a whole number of tokens, ending
    in a dot, e.g. `"t123."`), sorted; none when the bucket does not exist."""
    subject_prefix = f"$KV.{bucket}."
    pattern = f"{subject_prefix}{prefix}>" if prefix else f"{subject_prefix}>"
    try:
        info = await js.stream_info(f"KV_{bucket}", subjects_filter=pattern)
    except NotFoundError:
        return []
    return sorted(subject.removeprefix(subject_prefix) for subject in info.state.subjects or {})


async def bucket_keys(kv: KeyValue, prefix: str = "") -> list[str]:
    """`kv_keys` for a bucket handle (nats-py keeps its context and name on the handle)."""
    return await kv_keys(kv._js, kv._name, prefix)


async def bucket_values(kv: KeyValue, keys: str = ">", timeout_s: float = 10.0) -> dict[str, bytes]:
    """Every key of `kv` matching `keys` (a KV filter) that holds a value, with its value,
    read in one pass (a consumer of the last message of each key), not a listing and then
    a read per key. Deleted and purged keys are skipped.

    Not nats-py's watcher: it signals "all delivered" from the messages it has *parsed*,
    so when the server has sent them all before it answers the watcher's consumer-info
    request, the signal comes first and a reader stops with nothing. Here the server's
    counts decide: a pass ends on a message with nothing pending after it, or, when
    deliveries pause, once the server says nothing is pending and every message it
    delivered has been read (a marker that expires mid-pass, `purge(msg_ttl=...)`, is
    never delivered). The consumer is deleted after the pass. A pass that has not ended by
    `timeout_s` raises TimeoutError instead of hanging."""
    js, stream, subject_prefix = kv._js, kv._stream, kv._pre
    nc = js._nc
    values: dict[str, bytes] = {}
    read = 0
    ended = anyio.Event()

    async def take(msg: Msg) -> None:
        nonlocal read
        read += 1
        key = msg.subject.removeprefix(subject_prefix)
        if msg.data and not _is_removal(msg.headers):
            values[key] = msg.data
        else:
            values.pop(key, None)
        if msg.metadata.num_pending == 0:
            ended.set()

    deliver = nc.new_inbox()
    sub = await nc.subscribe(deliver, cb=take)
    config = ConsumerConfig(
        name=nc._nuid.next().decode(), filter_subject=subject_prefix + keys,
        deliver_subject=deliver, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=AckPolicy.NONE, inactive_threshold=PASS_CONSUMER_IDLE_S,
        mem_storage=True, num_replicas=1)
    assert config.name is not None
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
        with anyio.CancelScope(shield=True):
            await _close_quietly(js, stream, config.name if created else None, sub)
    return values


def _all_read(info: ConsumerInfo, read: int) -> bool:
    """Whether a pass that has read `read` messages has read all the consumer will send."""
    delivered = info.delivered.consumer_seq if info.delivered else 0
    return info.num_pending == 0 and read >= (delivered or 0)


def _is_removal(headers: dict[str, str] | None) -> bool:
    """A delete or purge marker: the client's (KV-Operation) or the server's
    (Nats-Marker-Reason, for a TTL or age expiry)."""
    if not headers:
        return False
    return headers.get("KV-Operation") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers


async def _close_quietly(js: JetStreamContext, stream: str, consumer: str | None,
                         sub: Subscription) -> None:
    """The pass's consumer and inbox, gone now rather than after the idle threshold."""
    try:
        await sub.unsubscribe()
        if consumer is not None:
            await js.delete_consumer(stream, consumer)
    except Exception:  # the consumer expires on its own anyway
        pass
