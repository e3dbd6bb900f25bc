"""The keys of a KV bucket, read from its stream's subjects in one request, and its values
in one pass.

Not `KeyValue.keys()`: nats-py answers that from a watcher that gives up after a few
seconds, which on a busy machine can list no keys at all. A stream-info request with a
subject filter lists every subject that holds a message (deleted and purged keys keep a
marker message: `KeyValue.get` tells them apart).
"""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from crewbus.bus.stream_pass import read_pass


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
    read in one pass over the last message of each key (`stream_pass.read_pass`: not
    nats-py's watcher, whose "all delivered" can come before the values), not a listing
    and then a read per key. Deleted and purged keys are skipped. A pass that has not
    ended by `timeout_s` raises TimeoutError instead of hanging."""
    values: dict[str, bytes] = {}

    def take(msg: Msg) -> bool:
        key = msg.subject.removeprefix(kv._pre)
        if msg.data and not _is_removal(msg.headers):
            values[key] = msg.data
        else:
            values.pop(key, None)
        return True

    config = ConsumerConfig(filter_subject=kv._pre + keys,
                            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
    await read_pass(kv._js, kv._stream, config, take, timeout_s)
    return values


def _is_removal(headers: dict[str, str] | None) -> bool:
    """A delete or purge marker: the client's (KV-Operation) or the server's
    (Nats-Marker-Reason, for a TTL or age expiry)."""
    if not headers:
        return False
    return headers.get("KV-Operation") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers
