"""Versioned datasets on JetStream: an index in KV, each version's items in the object store.

Every change makes a new, immutable version; nothing is ever rewritten, so an experiment
that pinned version 3 reads the same items forever. A change is validated whole before
anything is written (nothing is half-imported), its items object is written before the
index names it (a reader never finds a version without its items), and the index update
names the revision it read, so two writers at once both land, numbered in order.

Reading never creates anything: on a bus without the dataset buckets there are simply no
datasets. Writing creates the buckets when missing (`ensure_dataset_stores`), because users
make datasets, possibly before any service set the bus up.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import anyio
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from crewbus.bus.kv_keys import bucket_keys
from crewbus.bus.topology import ensure_dataset_stores
from crewbus.evals.jsonl import (
    NoItems,
    canonical_jsonl,
    decode_canonical,
    digest,
    parse_jsonl,
)
from crewbus_contracts import subjects
from crewbus_contracts.evals import DATASET_NAME, DatasetInfo, DatasetItem, DatasetVersion

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 20
"""Index updates tried before giving up when other writers keep changing the dataset."""

Items = list[DatasetItem]
Infos = list[DatasetInfo]
_info_decoder = msgspec.json.Decoder(DatasetInfo)
_encoder = msgspec.json.Encoder()


class DatasetError(Exception):
    """Something about a dataset a caller should be told in one sentence."""


class InvalidDatasetName(DatasetError, ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"invalid dataset name {name!r}: letters, digits, '_' and '-', "
                         "at most 64, starting with a letter or digit")


class DatasetNotFound(DatasetError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no dataset {name!r} (see `crewbus dataset list`)")
        self.name = name


class DatasetVersionNotFound(DatasetError, LookupError):
    def __init__(self, name: str, version: int, latest: int) -> None:
        super().__init__(f"dataset {name!r} has no version {version} (versions 1..{latest})")
        self.name, self.version = name, version


class DatasetExists(DatasetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"dataset {name!r} already exists: `crewbus dataset add {name} "
                         "--from FILE` makes a new version of it")
        self.name = name


class ItemsAlreadyInDataset(DatasetError, ValueError):
    """An append named ids the dataset already has: appending never replaces an item."""

    def __init__(self, name: str, version: int, ids: list[str]) -> None:
        shown = ", ".join(repr(i) for i in ids[:10]) + (" ..." if len(ids) > 10 else "")
        super().__init__(f"dataset {name!r} v{version} already has {len(ids)} of these ids: "
                         f"{shown} (append adds new items; a full new list replaces them)")
        self.ids = ids


class DatasetCorrupt(DatasetError):
    """A version's items are missing or do not match its digest."""


class DatasetBusy(DatasetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"dataset {name!r} kept changing under {WRITE_ATTEMPTS} attempts "
                         "to add a version; try again")


def check_name(name: str) -> str:
    if not re.fullmatch(DATASET_NAME, name):
        raise InvalidDatasetName(name)
    return name


class DatasetStore:
    """Datasets on the bus. `replicas` only matters when this store creates the buckets.
    (`Items` and `Infos` name the list types: the class has a method named `list`.)"""

    def __init__(self, js: JetStreamContext, replicas: int = 1) -> None:
        self.js = js
        self.replicas = replicas
        self._stores: tuple[KeyValue, ObjectStore] | None = None

    # -- reading ------------------------------------------------------------------------

    async def get(self, name: str) -> DatasetInfo | None:
        index = await self._index()
        if index is None:
            return None
        found = await self._entry(index, check_name(name))
        return found[0] if found else None

    async def list(self) -> Infos:
        index = await self._index()
        if index is None:
            return []
        names = await bucket_keys(index)
        infos = [found[0] for name in sorted(names) if (found := await self._entry(index, name))]
        return infos

    async def items(self, name: str, version: int | None = None
                    ) -> tuple[DatasetVersion, Items]:
        """A version's items (the latest by default), checked against its digest."""
        chosen, data = await self._version_data(name, version)
        return chosen, decode_canonical(data)

    async def export(self, name: str, version: int | None = None) -> bytes:
        """A version's canonical JSONL, as stored: `create` takes it back unchanged."""
        return (await self._version_data(name, version))[1]

    async def _version_data(self, name: str, version: int | None
                            ) -> tuple[DatasetVersion, bytes]:
        info = await self.get(name)
        if info is None:
            raise DatasetNotFound(name)
        chosen = info.latest if version is None else next(
            (v for v in info.versions if v.version == version), None)
        if chosen is None:
            raise DatasetVersionNotFound(name, version or 0, info.latest.version)
        try:
            objects = (self._stores[1] if self._stores is not None
                       else await self.js.object_store(subjects.DATASETS_OBJECTS))
            data = (await objects.get(chosen.object_name)).data or b""
        except NotFoundError as exc:
            raise DatasetCorrupt(f"dataset {name!r} v{chosen.version}: its items "
                                 f"({chosen.object_name}) are missing") from exc
        if digest(data) != chosen.digest:
            raise DatasetCorrupt(f"dataset {name!r} v{chosen.version}: its items do not "
                                 "match the digest in the index")
        return chosen, data

    # -- writing ------------------------------------------------------------------------

    async def create(self, name: str, items: Items, description: str = "",
                     note: str = "") -> DatasetVersion:
        """A new dataset with its version 1; DatasetExists when the name is taken."""
        data = _validated(check_name(name), items)
        index, objects = await self._open()
        if await self._entry(index, name) is not None:
            raise DatasetExists(name)
        version = await self._put_version(objects, name, 1, data, len(items), note)
        info = DatasetInfo(name=name, created_at=version.created_at,
                           description=description, versions=[version])
        try:
            await index.create(name, _encoder.encode(info))
        except KeyWrongLastSequenceError:
            await self._discard(objects, version)
            raise DatasetExists(name) from None
        return version

    async def add_version(self, name: str, items: Items, note: str = ""
                          ) -> DatasetVersion:
        """A new version holding exactly `items` (the previous ones stay as they were)."""
        _validated(check_name(name), items)

        async def replace(_: DatasetInfo) -> Items:
            return items

        return await self._change(name, replace, note)

    async def append(self, name: str, items: Items, note: str = ""
                     ) -> DatasetVersion:
        """A new version: the latest version's items, then `items` (whose ids must be new)."""
        _validated(check_name(name), items)

        async def extend(info: DatasetInfo) -> Items:
            _, previous = await self.items(name, info.latest.version)
            known = {item.id for item in previous}
            if clash := [item.id for item in items if item.id in known]:
                raise ItemsAlreadyInDataset(name, info.latest.version, clash)
            return [*previous, *items]

        return await self._change(name, extend, note)

    async def _change(self, name: str,
                      next_items: Callable[[DatasetInfo], Awaitable[Items]],
                      note: str) -> DatasetVersion:
        """Add the next version, reading again and renumbering when another writer won."""
        index, objects = await self._open()
        for attempt in range(WRITE_ATTEMPTS):
            found = await self._entry(index, name)
            if found is None:
                raise DatasetNotFound(name)
            info, revision = found
            items = await next_items(info)
            data = _validated(name, items)
            version = await self._put_version(objects, name, info.latest.version + 1, data,
                                              len(items), note)
            changed = msgspec.structs.replace(info, versions=[*info.versions, version])
            try:
                await index.update(name, _encoder.encode(changed), last=revision)
                return version
            except KeyWrongLastSequenceError:
                await self._discard(objects, version)
                # Spread the writers out a little, so they do not collide again at once.
                await anyio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise DatasetBusy(name)

    async def _put_version(self, objects: ObjectStore, name: str, number: int, data: bytes,
                           count: int, note: str) -> DatasetVersion:
        object_name = f"{name}/v{number}.{secrets.token_hex(4)}.jsonl"
        await objects.put(object_name, data)
        return DatasetVersion(version=number, created_at=time.time(), items=count,
                              digest=digest(data), object_name=object_name, note=note)

    async def _discard(self, objects: ObjectStore, version: DatasetVersion) -> None:
        """Delete the items of a version that lost the race (no index entry names them)."""
        try:
            await objects.delete(version.object_name)
        except Exception as exc:  # an orphan object is harmless; say so and go on
            log.warning("could not delete unused dataset object %s: %s",
                        version.object_name, exc)

    # -- buckets ------------------------------------------------------------------------

    async def _entry(self, index: KeyValue, name: str) -> tuple[DatasetInfo, int] | None:
        try:
            entry = await index.get(name)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return _info_decoder.decode(entry.value), entry.revision

    async def _index(self) -> KeyValue | None:
        """The index when it exists (reading creates nothing)."""
        if self._stores is not None:
            return self._stores[0]
        with contextlib.suppress(BucketNotFoundError, NotFoundError):
            return await self.js.key_value(subjects.DATASETS_KV)
        return None

    async def _open(self) -> tuple[KeyValue, ObjectStore]:
        if self._stores is None:
            self._stores = await ensure_dataset_stores(self.js, self.replicas)
        return self._stores


def _validated(name: str, items: list[DatasetItem]) -> bytes:
    """The items' canonical JSONL, after checking them exactly as an imported file is
    checked (types, lengths, blank text, duplicate ids): items built in code (from a task,
    by a program) get no easier way in."""
    if not items:
        raise NoItems()
    data = canonical_jsonl(items)
    parse_jsonl(data, unit="item")
    return data
