"""Task ids: derived from the idempotency key when there is one (same key, same task)."""

from __future__ import annotations

import hashlib
import uuid


def task_id_for(idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return "t" + uuid.uuid4().hex[:24]
    return "t" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
