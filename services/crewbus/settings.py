"""Settings: one msgspec Struct per service, read from the environment.

Every field `foo` of a settings Struct is read from `CREWBUS_FOO` (or the prefix the
Struct names), converted with msgspec so a bad value fails loudly at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


def load(
    cls: type[S], prefix: str = "CREWBUS_", env: dict[str, str] | None = None, **overrides: Any
) -> S:
    """Build `cls` from `prefix`+FIELD environment variables, then apply `overrides`."""
    source = os.environ if env is None else env
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        key = prefix + field.encode_name.upper()
        if source.get(key):  # empty counts as unset, as compose passes unset variables
            raw[field.encode_name] = source[key]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return msgspec.convert(raw, cls, strict=False)


class BusSettings(msgspec.Struct, kw_only=True, frozen=True):
    """How every service reaches NATS and how work is delivered."""

    nats_url: str = "nats://127.0.0.1:4222"
    connect_timeout_s: float = 60.0
    """How long a starting service waits for NATS before giving up."""
    ack_wait_s: float = 30.0
    """A work message not acked (or marked in progress) within this is redelivered."""
    heartbeat_s: float = 5.0
    """How often a busy worker tells JetStream it is still working on a message."""
    max_deliver: int = 3
    """Deliveries of one work message before it goes to the dead-letter stream."""
    orchestrator_max_deliver: int = 50
    """Deliveries of a submission or result to the orchestrator: these must not be lost to a
    busy or restarting orchestrator, so the bound is far higher than for agent work."""
    max_submit_bytes: int = 64 * 1024
    """Largest submission accepted by the gateway."""
    events_max_age_s: float = 7 * 24 * 3600.0
    stream_replicas: int = 1


def data_dir() -> Path:
    """Where embedded parts keep their files: `$CREWBUS_DATA_DIR` or `./.crewbus`."""
    return Path(os.environ.get("CREWBUS_DATA_DIR", ".crewbus")).resolve()
