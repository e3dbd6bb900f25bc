"""API keys on the bus: created and revoked by `crewbus apikey`, checked by every gateway.

A key reads `crewbus_<key id>_<secret>`. The bucket `API_KEYS_KV` holds, under the key id,
an `ApiKey` with the SHA-256 of the whole key: a fast hash is enough, since the secret is
32 random bytes (nothing to guess, unlike a password), and it keeps a check under a
millisecond. Every replica reads the same bucket, so a revoke holds everywhere at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from crewbus.bus.kv_keys import kv_keys
from crewbus_contracts import subjects
from crewbus_contracts.apikeys import KEY_NAME, SCOPES, ApiKey, Scope

PREFIX = "crewbus_"
_KEY = re.compile(r"^crewbus_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{20,})$")
_decoder = msgspec.json.Decoder(ApiKey)
_encoder = msgspec.json.Encoder()


class ApiKeyError(ValueError):
    """A key command that cannot be done (a bad name or scope, a name in use, no such key)."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str) -> list[Scope]:
    """`submit,read` → the scopes, refusing one that does not exist."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ApiKeyError(f"unknown scope {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(SCOPES)}")
    return [s for s in SCOPES if s in wanted]


class KeyStore:
    """The keys in the bucket. Lookups go to the bucket each time (one KV get), so a key
    revoked on one replica is refused by every other at once."""

    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self.kv = kv
        self.js = js

    @classmethod
    async def open(cls, js: JetStreamContext) -> KeyStore:
        return cls(await js.key_value(subjects.API_KEYS_KV), js)

    async def _key_ids(self) -> list[str]:
        """Every key id the bucket has a message for (`crewbus.bus.kv_keys`)."""
        return await kv_keys(self.js, subjects.API_KEYS_KV)

    async def create(self, name: str, scopes: Sequence[Scope],
                     rate_per_minute: int | None = None) -> tuple[str, ApiKey]:
        """A new key named `name`; returns the key itself (shown once) and its record."""
        if not re.match(KEY_NAME, name):
            raise ApiKeyError(f"bad key name {name!r}: letters, digits, '_', '.', '-' "
                              "(up to 64, starting with a letter or digit)")
        if await self.find(name) is not None:
            raise ApiKeyError(f"a key named {name!r} exists; revoke it first")
        key_id = secrets.token_hex(8)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id=key_id, name=name, scopes=list(scopes),
                        secret_sha256=digest(key), created_at=time.time(),
                        rate_per_minute=rate_per_minute)
        await self.kv.create(key_id, _encoder.encode(record))
        return key, record

    async def list(self) -> list[ApiKey]:
        found = [await self._get(key_id) for key_id in await self._key_ids()]
        return sorted((k for k in found if k is not None), key=lambda k: k.created_at)

    async def any(self) -> bool:
        return bool(await self.list())

    async def find(self, name: str) -> ApiKey | None:
        return next((k for k in await self.list() if k.name == name), None)

    async def revoke(self, name: str) -> ApiKey:
        record = await self.find(name)
        if record is None:
            raise ApiKeyError(f"no key named {name!r}")
        await self.kv.purge(record.key_id)
        return record

    async def verify(self, key: str) -> ApiKey | None:
        """The record of a valid key; None for anything else (unknown, revoked, forged)."""
        found = _KEY.match(key)
        if found is None:
            return None
        record = await self._get(found["key_id"])
        if record is None or not hmac.compare_digest(record.secret_sha256, digest(key)):
            return None
        return record

    async def _get(self, key_id: str) -> ApiKey | None:
        try:
            entry = await self.kv.get(key_id)
        except KeyNotFoundError:
            return None
        return _decoder.decode(entry.value) if entry.value else None


async def open_key_store(js: JetStreamContext, replicas: int = 1) -> KeyStore:
    """The store, creating the bucket (at `replicas`) when nothing has yet (`crewbus apikey`
    before any service ran)."""
    from crewbus.bus.topology import ensure_api_keys_bucket

    try:
        return await KeyStore.open(js)
    except (BucketNotFoundError, NotFoundError):
        await ensure_api_keys_bucket(js, replicas)
        return await KeyStore.open(js)
