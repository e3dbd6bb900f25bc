"""(variant, role) -> the prompt text and version, model, endpoint and parameters to serve a
piece of work with, read from the bus.

The agents keep a cache that only KV watches fill: a label move, a new variant or a
deleted one reaches every replica as soon as its watch delivers it (milliseconds), with
no restart. What the cache lacks is read from the bucket directly, so a variant set a
moment before its first task still resolves. Prompt texts are immutable, so they are
kept once read. Without a running watch (`watch()`), nothing is cached but texts: the
gateway resolves that way, always against the bucket.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from crewbus.bus.kv_watch import KeyWatch
from crewbus.variants.errors import UnknownPromptError
from crewbus.variants.prompt_store import PromptStore
from crewbus.variants.variant_store import VariantStore
from crewbus_contracts import AGENT_ROLES, PRODUCTION, PromptIndex, PromptText, Variant

log = logging.getLogger(__name__)

WATCH_RETRY_S = (0.5, 1.0, 2.0, 5.0)
"""Pauses before a failed watch starts again (the last one repeats)."""
MAX_TEXTS = 256
"""Prompt texts kept in memory (the newest used)."""

_Apply = Callable[[str, bytes | None], None]
"""Puts one watched key's value (None: deleted) into the cache."""

_index_decoder = msgspec.json.Decoder(PromptIndex)
_variant_decoder = msgspec.json.Decoder(Variant)


@dataclass(frozen=True, slots=True)
class ResolvedRole:
    """How one role serves a task of one variant."""

    variant: str
    role: str
    prompt_number: int
    prompt_name: str
    prompt_text: str
    prompt_sha256: str
    model: str | None = None
    """None: the agent's configured model."""
    endpoint: str | None = None
    """None: the agent's configured endpoint."""
    temperature: float | None = None
    max_tool_calls: int | None = None

    @property
    def prompt_version(self) -> str:
        """What results, task state, traces and metrics call this prompt: its number."""
        return str(self.prompt_number)


class VariantResolver:
    def __init__(self, prompts: KeyValue, variants: KeyValue) -> None:
        self.prompts = PromptStore(prompts)
        self.variants = VariantStore(variants)
        self._indexes: dict[str, PromptIndex] = {}
        self._variants: dict[str, Variant] = {}
        self._texts: OrderedDict[tuple[str, int], PromptText] = OrderedDict()
        self.watched = anyio.Event()
        """Set once both watches have delivered what the buckets held at their start."""
        self._caught_up: set[str] = set()

    async def resolve(self, variant: str, role: str) -> ResolvedRole:
        """Raise UnknownVariantError or UnknownPromptError rather than fall back."""
        found = await self._variant(variant)
        override = found.override(role)
        ref = override.prompt or PRODUCTION
        index = await self._index(role)
        number = index.resolve(ref) if index is not None else None
        if number is None:
            raise UnknownPromptError(role, ref, index,
                                     variant=None if variant == PRODUCTION else variant)
        text = await self._text(role, number)
        return ResolvedRole(
            variant=variant, role=role, prompt_number=number, prompt_name=text.name,
            prompt_text=text.text, prompt_sha256=text.sha256, model=override.model,
            endpoint=override.endpoint, temperature=override.temperature,
            max_tool_calls=override.max_tool_calls)

    async def check(self, variant: str) -> None:
        """Raise unless `variant` exists and every prompt it names resolves (what the
        gateway asks before it accepts a task)."""
        found = await self._variant(variant)
        for role in AGENT_ROLES:
            ref = found.override(role).prompt
            if ref is None or ref == PRODUCTION:
                continue  # every role has production once its agent started
            index = await self._index(role)
            if index is None or index.resolve(ref) is None:
                raise UnknownPromptError(role, ref, index, variant=variant)

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the cache in step with both buckets until cancelled; started once the
        watches are subscribed."""
        async with anyio.create_task_group() as tg:
            await tg.start(self._keep_watching, self.prompts.kv, "*", self._on_prompt,
                           self._indexes, "prompts")
            await tg.start(self._keep_watching, self.variants.kv, ">", self._on_variant,
                           self._variants, "variants")
            task_status.started()

    async def _variant(self, name: str) -> Variant:
        if name == PRODUCTION:
            return await self.variants.require(name)
        cached = self._variants.get(name)
        return cached if cached is not None else await self.variants.require(name)

    async def _index(self, role: str) -> PromptIndex | None:
        cached = self._indexes.get(role)
        return cached if cached is not None else await self.prompts.index(role)

    async def _text(self, role: str, number: int) -> PromptText:
        key = (role, number)
        text = self._texts.get(key)
        if text is None:
            text = await self.prompts.text(role, number)
            self._texts[key] = text
            while len(self._texts) > MAX_TEXTS:
                self._texts.popitem(last=False)
        self._texts.move_to_end(key)
        return text

    def _on_prompt(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._indexes.pop(key, None)
        else:
            self._indexes[key] = _index_decoder.decode(value)

    def _on_variant(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._variants.pop(key, None)
        else:
            self._variants[key] = _variant_decoder.decode(value)

    async def _keep_watching(
        self, kv: KeyValue, keys: str, apply: _Apply, cache: dict[str, Any], name: str,
        *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """One bucket's watch (`keys`: `*` is the prompt indexes, not their texts), started
        again after a failure; that bucket's cache is dropped meanwhile, so reads go to
        the bucket and are never staler than the bucket."""
        failures = 0
        while True:
            try:
                watcher = await KeyWatch.start(kv, keys)
            except Exception as exc:
                log.warning("cannot watch the %s: %s", name, exc)
                watcher = None
            if failures == 0:
                task_status.started()  # serve anyway: the bucket is read directly
            if watcher is not None:
                try:
                    await self._follow(watcher, apply, name)
                except Exception as exc:
                    log.warning("the watch of the %s failed: %s", name, exc)
                finally:
                    with anyio.CancelScope(shield=True):
                        await _stop(watcher)
            cache.clear()
            await anyio.sleep(WATCH_RETRY_S[min(failures, len(WATCH_RETRY_S) - 1)])
            failures += 1

    async def _follow(self, watcher: KeyWatch, apply: _Apply, name: str) -> None:
        async for entry in watcher:
            if entry is None:  # what the bucket held at the start has all arrived
                self._caught_up.add(name)
                if len(self._caught_up) == 2:
                    self.watched.set()
                continue
            deleted = entry.operation in (KV_DEL, KV_PURGE) or entry.value is None
            try:
                apply(entry.key, None if deleted else entry.value)
            except msgspec.ValidationError as exc:  # another writer's bad document
                log.warning("ignoring %s: %s", entry.key, exc)


async def _stop(watcher: KeyWatch) -> None:
    try:
        await watcher.stop()
    except Exception:
        log.debug("watcher did not stop cleanly", exc_info=True)
