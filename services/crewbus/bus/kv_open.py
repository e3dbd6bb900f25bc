"""Opening a KV bucket for direct gets, or for reads that must see every acknowledged write.

nats-py's `KeyValue.get` asks the stream's leader (`$JS.API.STREAM.MSG.GET`: a JSON reply
with the value in base64) unless the bucket's stream allows direct gets; then it asks
`$JS.API.DIRECT.GET` (the raw message), which any replica may answer. With one replica
that is the same server, so the same answer; with more, a follower that lags may answer
with an older revision, or "not found" for a key just written.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue


async def open_bucket(js: JetStreamContext, bucket: str, *, consistent: bool = False
                      ) -> KeyValue:
    """`js.key_value(bucket)`, using direct gets when the bucket's stream allows them; with
    `consistent`, only when it has one replica (else every read goes to the leader).

    `consistent` is for readers that act on "nothing there" or "nothing new": the
    orchestrator confirming that a decision has nothing to do (a stale revision there
    would drop an input), a tool loop looking for the record of a call it may already
    have made (a stale miss would make the call twice)."""
    stream = f"KV_{bucket}"
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        raise BucketNotFoundError from None
    config = info.config
    direct = bool(config.allow_direct) and (not consistent or (config.num_replicas or 1) == 1)
    return KeyValue(name=bucket, stream=stream, pre=f"$KV.{bucket}.", js=js, direct=direct)
