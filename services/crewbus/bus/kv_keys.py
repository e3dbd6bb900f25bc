"""The keys of a KV bucket, read from its stream's subjects in one request.

Not `KeyValue.keys()`: nats-py answers that from a watcher that gives up after a few
seconds, which on a busy machine can list no keys at all. A stream-info request with a
subject filter lists every subject that holds a message (deleted and purged keys keep a
marker message: `KeyValue.get` tells them apart).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue


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


async def bucket_values(kv: KeyValue, timeout_s: float = 10.0) -> dict[str, bytes]:
    """Every key of `kv` that holds a value, with its value, read in one pass (one ordered
    consumer on the last message of each key), not a listing and then a read per key.

    Unlike `bucket_keys`, deleted and purged keys are skipped (the pass still delivers
    their markers while they last). Each wait is bounded: a marker that expires while the
    pass is delivering (`purge(msg_ttl=...)`) can leave nats-py's watcher waiting for an
    "all delivered" signal that never comes, so a pass that stalls fails instead of
    hanging (callers that run every second simply try again)."""
    watcher = await kv.watchall(ignore_deletes=True)
    values: dict[str, bytes] = {}
    try:
        while (entry := await watcher.updates(timeout=timeout_s)) is not None:
            if entry.value:
                values[entry.key] = entry.value
    finally:
        await watcher.stop()
    return values
