"""Variants in `crewbus_variants`: set a role's overrides, read, list, delete.

`production` is never stored: it is every role on its `production` label with the agents'
configured models, so it cannot be edited away; promoting is moving that label.
"""

from __future__ import annotations

import re
import time
from typing import cast

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from crewbus.bus.kv_keys import bucket_keys
from crewbus.variants.errors import StoreContendedError, UnknownVariantError
from crewbus_contracts import PRODUCTION, AgentRole, RoleOverride, Variant
from crewbus_contracts.prompts import VARIANT_NAME

MAX_RACES = 20

_decoder = msgspec.json.Decoder(Variant)

IMPLICIT_PRODUCTION = Variant(name=PRODUCTION)
"""The default variant: no overrides."""


def check_name(name: str) -> None:
    """Refuse a name that can't be a variant's (and `production`, which is implicit)."""
    if name == PRODUCTION:
        raise ValueError("'production' is the implicit variant (every role on its production "
                         "label): change it with `crewbus prompt label ROLE VERSION "
                         "production`")
    if not re.match(VARIANT_NAME, name):
        raise ValueError(f"variant name {name!r} must be letters, digits, '-' or '_' (up to "
                         "64, starting with a letter or digit)")


class VariantStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, name: str) -> Variant | None:
        """The variant `name`; `production` is the implicit one; None if there is none."""
        if name == PRODUCTION:
            return IMPLICIT_PRODUCTION
        return (await self._read(name))[0]

    async def require(self, name: str) -> Variant:
        variant = await self.get(name)
        if variant is None:
            raise UnknownVariantError(name)
        return variant

    async def set_role(self, name: str, role: str, changes: dict[str, object],
                       description: str | None = None) -> Variant:
        """Set `changes` (RoleOverride fields) for `role` in variant `name`, creating it;
        the role's other fields and the other roles are kept."""
        check_name(name)
        for _ in range(MAX_RACES):
            variant, revision = await self._read(name)
            now = time.time()
            variant = variant or Variant(name=name, created_at=now)
            current = msgspec.to_builtins(variant.override(role))
            override = msgspec.convert({**current, **changes}, RoleOverride)
            roles: dict[AgentRole, RoleOverride] = {**variant.roles,
                                                    cast(AgentRole, role): override}
            updated = msgspec.structs.replace(
                variant, roles=roles, updated_at=now,
                description=variant.description if description is None else description)
            data = msgspec.json.encode(updated)
            try:
                if revision is None:
                    await self.kv.create(name, data)
                else:
                    await self.kv.update(name, data, last=revision)
            except KeyWrongLastSequenceError:
                continue
            return updated
        raise StoreContendedError(f"variant {name!r} kept changing; try again")

    async def delete(self, name: str) -> None:
        check_name(name)
        if (await self._read(name))[0] is None:
            raise UnknownVariantError(name)
        await self.kv.delete(name)

    async def all(self) -> list[Variant]:
        keys = await bucket_keys(self.kv)
        found = [await self.get(key) for key in sorted(keys)]
        return [v for v in found if v is not None]

    async def _read(self, name: str) -> tuple[Variant | None, int | None]:
        try:
            entry = await self.kv.get(name)
        except KeyNotFoundError:
            return None, None
        if entry.value is None:
            return None, None
        return _decoder.decode(entry.value), entry.revision
