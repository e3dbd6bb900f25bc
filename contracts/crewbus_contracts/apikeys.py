"""API keys of the HTTP gateway, as kept in the `API_KEYS_KV` bucket (key: the key's id).

Only a hash of the secret is stored: a key is shown once, when it is created, and a
leaked bucket lets nobody in.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec

from crewbus_contracts.base import Message

Scope = Literal["submit", "read", "approve", "admin"]
"""What a key may do: `submit` (and cancel) tasks, `read` tasks, events and traces,
`approve` tool calls, `admin` everything."""
SCOPES: tuple[Scope, ...] = get_args(Scope)

KEY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ApiKey(Message, tag="api_key"):
    """One API key: who it is for, what it may do, and the SHA-256 of its secret."""

    key_id: str
    """The public part of the key (`crewbus_<key_id>_<secret>`), and its KV key."""
    name: Annotated[str, msgspec.Meta(pattern=KEY_NAME)]
    scopes: list[Scope]
    secret_sha256: str
    """Hex SHA-256 of the whole key string; the key itself is never stored."""
    created_at: float
    rate_per_minute: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Requests this key may make per minute on one gateway replica; None: the default."""
