"""Per-key rate limits: a token bucket per API key, in this replica's memory.

The bucket holds up to `rate` requests and refills at `rate` per minute. Behind N replicas
a key gets up to N times its rate (each replica counts alone); a shared counter on the bus
would cost every request a KV round trip, which the latency budget of the gateway has no
room for.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key_id: str, rate_per_minute: int, now: float | None = None) -> int | None:
        """Spend one request of `key_id`; None if allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        refill = rate_per_minute / 60.0
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(rate_per_minute), now)
        bucket.tokens = min(float(rate_per_minute),
                            bucket.tokens + (now - bucket.updated) * refill)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / refill))
