"""Prompt versions and labels in `crewbus_prompts`: push, label, read.

Every write is race-safe across replicas and CLIs at once. A version's text is written
first, claiming its number with a create (which only one writer wins); the role's index
is then updated with a revision check and retried on a conflict. An index entry
therefore always has its text, and two writers of the same text end up with one version.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from crewbus.variants.errors import StoreContendedError, UnknownPromptError
from crewbus_agents.prompts import Prompt
from crewbus_contracts import PRODUCTION, PromptIndex, PromptText, PromptVersionInfo
from crewbus_contracts.prompts import LABEL_NAME, PromptSource

MAX_RACES = 20
"""Tries before a write that keeps losing to other writers gives up (bounded)."""

_index_decoder = msgspec.json.Decoder(PromptIndex)
_text_decoder = msgspec.json.Decoder(PromptText)


@dataclass(frozen=True, slots=True)
class Pushed:
    """What a push did: the version holding the text, and whether it is new."""

    role: str
    number: int
    created: bool
    labelled: str | None = None
    previous: int | None = None
    """The version the label pointed at before, if it moved."""


def text_key(role: str, number: int) -> str:
    return f"{role}.{number}"


class PromptStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def index(self, role: str) -> PromptIndex | None:
        return (await self._read_index(role))[0]

    async def require_index(self, role: str) -> PromptIndex:
        index = await self.index(role)
        if index is None:
            raise UnknownPromptError(role, PRODUCTION, None)
        return index

    async def resolve(self, role: str, ref: str) -> tuple[PromptIndex, int]:
        """The index of `role` and the version `ref` (a number or a label) names."""
        index = await self.require_index(role)
        number = index.resolve(ref)
        if number is None:
            raise UnknownPromptError(role, ref, index)
        return index, number

    async def text(self, role: str, number: int) -> PromptText:
        try:
            entry = await self.kv.get(text_key(role, number))
        except KeyNotFoundError:
            raise UnknownPromptError(role, str(number), await self.index(role)) from None
        assert entry.value is not None
        return _text_decoder.decode(entry.value)

    async def push(self, role: str, prompt: Prompt, label: str | None = None,
                   source: PromptSource = "pushed") -> Pushed:
        """Store `prompt` as the next version of `role` (or find the version that already
        has its text) and, when given, point `label` at it."""
        return await self._add(role, prompt, source, label, label_only_if_unset=False)

    async def seed(self, role: str, prompt: Prompt) -> Pushed:
        """Store a packaged prompt if its text is new; on a bus without any version of
        `role` it becomes version 1 and `production`. Production never moves here."""
        return await self._add(role, prompt, "packaged", PRODUCTION, label_only_if_unset=True)

    async def label(self, role: str, number: int, label: str) -> int | None:
        """Point `label` at version `number`; return the version it pointed at before."""
        _check_label(label)
        for _ in range(MAX_RACES):
            index, revision = await self._read_index(role)
            if index is None or index.version(number) is None:
                raise UnknownPromptError(role, str(number), index)
            previous = index.labels.get(label)
            if previous == number:
                return previous
            labels = {**index.labels, label: number}
            if await self._write_index(role, msgspec.structs.replace(index, labels=labels),
                                       revision):
                return previous
        raise StoreContendedError(f"the {role} prompts kept changing; try again")

    async def _add(self, role: str, prompt: Prompt, source: PromptSource, label: str | None,
                   label_only_if_unset: bool) -> Pushed:
        if label is not None:
            _check_label(label)
        sha = prompt.sha256
        claimed: int | None = None  # kept across retries: the text is stored under it
        for _ in range(MAX_RACES):
            index, revision = await self._read_index(role)
            index = index or PromptIndex(role=role)  # type: ignore[arg-type]
            existing = index.by_sha256(sha)
            versions = list(index.versions)
            if existing is None:
                if claimed is None:
                    claimed = await self._claim_text(role, prompt, _next_number(index))
                number = claimed
                versions.append(PromptVersionInfo(number=number, sha256=sha,
                                                  name=prompt.version,
                                                  created_at=time.time(), source=source))
                versions.sort(key=lambda v: v.number)
            else:
                number = existing.number
            labels = dict(index.labels)
            previous = labels.get(label) if label else None
            move = label is not None and previous != number and not (
                label_only_if_unset and previous is not None)
            if move:
                labels[label] = number  # type: ignore[index]
            if existing is not None and not move:
                return Pushed(role, number, created=False)
            updated = msgspec.structs.replace(index, versions=versions, labels=labels)
            if await self._write_index(role, updated, revision):
                return Pushed(role, number, created=existing is None,
                              labelled=label if move else None,
                              previous=previous if move else None)
        raise StoreContendedError(f"the {role} prompts kept changing; try again")

    async def _claim_text(self, role: str, prompt: Prompt, first: int) -> int:
        """Write the text under the first free number from `first`; a number already
        holding this very text (another writer's, or one left by a crash) is reused."""
        for number in range(first, first + MAX_RACES):
            text = PromptText(role=role, number=number, name=prompt.version,  # type: ignore[arg-type]
                              sha256=prompt.sha256, text=prompt.text)
            try:
                await self.kv.create(text_key(role, number), msgspec.json.encode(text))
                return number
            except KeyWrongLastSequenceError:
                if (await self.text(role, number)).sha256 == prompt.sha256:
                    return number
        raise StoreContendedError(f"could not find a free {role} version number; try again")

    async def _read_index(self, role: str) -> tuple[PromptIndex | None, int | None]:
        try:
            entry = await self.kv.get(role)
        except KeyNotFoundError:
            return None, None
        if entry.value is None:
            return None, None
        return _index_decoder.decode(entry.value), entry.revision

    async def _write_index(self, role: str, index: PromptIndex, revision: int | None) -> bool:
        """Save `index` if nobody changed it since `revision` (None: it did not exist)."""
        data = msgspec.json.encode(index)
        try:
            if revision is None:
                await self.kv.create(role, data)
            else:
                await self.kv.update(role, data, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True


def _next_number(index: PromptIndex) -> int:
    return max((v.number for v in index.versions), default=0) + 1


def _check_label(label: str) -> None:
    if not re.match(LABEL_NAME, label):
        raise ValueError(f"label {label!r} must be lower-case letters, digits, '-' or '_', "
                         "starting with a letter (a number would read as a version)")
