"""Prompts as versioned, labelled artefacts on the bus, and variants: named sets of per-role
overrides (prompt version or label, model, endpoint, temperature, tool-call limit) that a
task names at submission and every agent replica serves side by side.

- `prompt_store`, `variant_store`: the two KV buckets, written race-safely.
- `resolver`: (variant, role) -> what to serve with, cached and kept fresh by KV watches.
- `seed`: the packaged prompt files as each role's first version.
- `cli`: `crewbus prompt ...` and `crewbus variant ...`.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from crewbus.variants.errors import (
    EndpointError,
    UnknownPromptError,
    UnknownVariantError,
    VariantsError,
)
from crewbus.variants.prompt_store import PromptStore, Pushed
from crewbus.variants.resolver import ResolvedRole, VariantResolver
from crewbus.variants.variant_store import VariantStore
from crewbus_contracts import subjects


async def open_resolver(js: JetStreamContext) -> VariantResolver:
    """A resolver on this bus's prompt and variant buckets (made by `ensure_topology`)."""
    return VariantResolver(await js.key_value(subjects.PROMPTS_KV),
                           await js.key_value(subjects.VARIANTS_KV))


__all__ = [
    "EndpointError",
    "PromptStore",
    "Pushed",
    "ResolvedRole",
    "UnknownPromptError",
    "UnknownVariantError",
    "VariantResolver",
    "VariantStore",
    "VariantsError",
    "open_resolver",
]
