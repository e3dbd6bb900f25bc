"""Listing a KV bucket's keys reliably.

Not `KeyValue.keys()`: nats-py answers that from a watcher that gives up after a few
seconds, which on a busy machine can list no keys at all. One stream-info request with a
subjects filter names every subject (key) the bucket holds a message for.
"""

from __future__ import annotations

from nats.js import JetStreamContext


async def kv_keys(js: JetStreamContext, bucket: str, keys: str = ">") -> list[str]:
    """Every key of `bucket` matching `keys` (a KV filter) that holds a message; a key
    whose last message is a delete is listed too (its `get` then finds nothing)."""
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}{keys}")
    return [subject.removeprefix(prefix) for subject in info.state.subjects or {}]
