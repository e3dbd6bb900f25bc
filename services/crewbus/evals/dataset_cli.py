"""`crewbus dataset`: create, list, show, export and extend versioned datasets on the bus.

Errors are one line like every crewbus error, with one exception: a bad JSONL file prints
one `line N: reason` line per bad line (exit 2), because fixing a file needs them all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crewbus.evals.datasets import DatasetStore
    from crewbus_contracts.evals import DatasetInfo, DatasetItem, DatasetVersion

EXIT_USAGE = 2
SHOW_LIMIT = 10
CELL_WIDTH = 60


def add_parser(subparsers: argparse._SubParsersAction[Any]
               ) -> Mapping[str, argparse.ArgumentParser]:
    """The `dataset` command and its subcommands (returned, so the caller adds --debug)."""
    dataset = subparsers.add_parser("dataset", help="keep versioned datasets of eval items")
    sub = dataset.add_subparsers(dest="dataset_command", required=True)

    create = sub.add_parser("create", help="a new dataset from a JSONL file (version 1)")
    create.add_argument("name")
    create.add_argument("--from", dest="source", required=True,
                        help="JSONL file, one item a line ('-': standard input)")
    create.add_argument("--description", default="")
    create.add_argument("--note", default="", help="what this version is")

    sub.add_parser("list", help="every dataset: versions, items, created")

    show = sub.add_parser("show", help="a dataset's versions and first items")
    show.add_argument("name")
    show.add_argument("--version", type=int, help="items of this version (default latest)")
    show.add_argument("--limit", type=int, default=SHOW_LIMIT, help="items to show")

    export = sub.add_parser("export", help="a version's items as JSONL")
    export.add_argument("name")
    export.add_argument("--version", type=int, help="default: the latest")
    export.add_argument("--out", type=Path, help="file to write (default standard output)")

    add = sub.add_parser("add", help="a new version with more items (from a file or a task)")
    add.add_argument("name")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="JSONL file of new items ('-': stdin)")
    source.add_argument("--from-task", metavar="TASK_ID",
                        help="one item from a task on the bus (creates the dataset if new)")
    source.add_argument("--from-feedback", action="store_true",
                        help="the tasks people scored below --below since --since (creates "
                             "the dataset if new; tasks already in it are skipped)")
    expected = add.add_mutually_exclusive_group()
    expected.add_argument("--expected", metavar="TEXT", help="--from-task: expected answer")
    expected.add_argument("--expected-json", metavar="JSON",
                          help="--from-task: expected value as JSON")
    add.add_argument("--id", dest="item_id", help="--from-task: item id (default task id)")
    add.add_argument("--below", type=float, default=0.5,
                     help="--from-feedback: a human score under this (default 0.5)")
    add.add_argument("--since", default="7d",
                     help="--from-feedback: feedback given this recently (default 7d)")
    add.add_argument("--replace", action="store_true",
                     help="--from: the file is the whole new version, not an addition")
    add.add_argument("--note", default="", help="what this version is")

    for command in sub.choices.values():
        command.add_argument("--nats", help="NATS URL (default $CREWBUS_NATS_URL or localhost)")
    return sub.choices


async def run(args: argparse.Namespace) -> int:
    from crewbus.evals.jsonl import DatasetInvalid

    try:
        return await _run(args)
    except DatasetInvalid as exc:
        where = f"{args.source}: " if getattr(args, "source", None) else ""
        print(f"crewbus dataset {args.dataset_command}: {where}{exc}", file=sys.stderr)
        return EXIT_USAGE


async def _run(args: argparse.Namespace) -> int:
    from crewbus.auth.permissions import ADMIN
    from crewbus.bus.connection import connect_for_command
    from crewbus.evals.datasets import DatasetStore
    from crewbus.settings import BusSettings, load

    command = args.dataset_command
    items = _read_items(args.source) if getattr(args, "source", None) else None
    _check_flags(args)
    bus = load(BusSettings, nats_url=args.nats)  # --nats, else $CREWBUS_NATS_URL, else local
    nc = await connect_for_command(bus.nats_url, ADMIN)
    try:
        store = DatasetStore(nc.jetstream(), replicas=bus.stream_replicas)
        if command == "create":
            assert items is not None
            version = await store.create(args.name, items, description=args.description,
                                         note=args.note)
            print(f"created dataset {args.name} v{version.version}: {version.items} items")
            return 0
        if command == "list":
            return _print_list(await store.list())
        if command == "show":
            return await _show(store, args.name, args.version, args.limit)
        if command == "export":
            return await _export(store, args.name, args.version, args.out)
        if items is not None:
            return await _add_items(store, args, items)
        if args.from_feedback:
            return await _add_feedback(store, args, nc)
        return await _add_task(store, args, nc)
    finally:
        await nc.close()


def _read_items(source: str) -> list[DatasetItem]:
    from crewbus.evals.jsonl import parse_jsonl

    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None
    return parse_jsonl(data)


def _check_flags(args: argparse.Namespace) -> None:
    """The `add` flags that only make sense with one of its two sources."""
    if args.dataset_command != "add":
        return
    if args.from_task is None:
        given = [flag for flag, value in (("--expected", args.expected),
                                          ("--expected-json", args.expected_json),
                                          ("--id", args.item_id)) if value is not None]
        if given:
            verb = "goes" if len(given) == 1 else "go"
            raise ValueError(f"{', '.join(given)} only {verb} with --from-task (in a file, "
                             "each item carries its own id and expected)")
    elif args.replace:
        raise ValueError("--replace only goes with --from FILE")
    if args.from_feedback and args.replace:
        raise ValueError("--replace only goes with --from FILE")


async def _add_items(store: DatasetStore, args: argparse.Namespace,
                     items: list[DatasetItem]) -> int:
    if args.replace:
        version = await store.add_version(args.name, items, note=args.note)
        print(f"dataset {args.name} v{version.version}: {version.items} items (replaced)")
    else:
        version = await store.append(args.name, items, note=args.note)
        print(f"dataset {args.name} v{version.version}: {version.items} items "
              f"(+{len(items)})")
    return 0


async def _add_task(store: DatasetStore, args: argparse.Namespace, nc: Any) -> int:
    from crewbus.client import CrewbusClient
    from crewbus.evals.datasets import DatasetExists, DatasetNotFound
    from crewbus.evals.task_items import item_from_task

    expected = args.expected
    if args.expected_json is not None:
        try:
            expected = json.loads(args.expected_json)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--expected-json is not JSON: {exc}") from None
    state = await CrewbusClient(nc).state(args.from_task)
    if state is None:
        raise LookupError(f"no task {args.from_task} (see `crewbus status`)")
    item = item_from_task(state, item_id=args.item_id, expected=expected)
    note = args.note or f"from task {state.task_id}"
    try:
        version = await store.append(args.name, [item], note=note)
    except DatasetNotFound:
        try:
            version = await store.create(args.name, [item], note=note)
        except DatasetExists:  # someone created it meanwhile: add to theirs
            version = await store.append(args.name, [item], note=note)
        else:
            print(f"created dataset {args.name}")
    unfinished = "" if state.is_final else f" (the task is still {state.status})"
    print(f"dataset {args.name} v{version.version}: {version.items} items "
          f"(+1: {item.id} from task {state.task_id}){unfinished}")
    return 0


async def _add_feedback(store: DatasetStore, args: argparse.Namespace, nc: Any) -> int:
    from crewbus.durations import parse_duration
    from crewbus.evals.online.from_feedback import feedback_items
    from crewbus.evals.online.scores import TaskScoreStore
    from crewbus.taskstore import TaskStore
    from crewbus_contracts import subjects

    if not 0.0 <= args.below <= 1.0:
        raise ValueError(f"--below {args.below:g}: a score from 0 to 1")
    since = time.time() - parse_duration(args.since)
    js = nc.jetstream()
    items, gone = await feedback_items(await TaskScoreStore.open(js),
                                       TaskStore(await js.key_value(subjects.TASKS_KV)),
                                       args.below, since)
    if gone:
        print(f"skipped {len(gone)} task(s) whose state has expired: {', '.join(gone[:5])}",
              file=sys.stderr)
    note = args.note or f"human feedback below {args.below:g} since {args.since}"
    version = await _append_new(store, args.name, items, note)
    if version is None:
        print(f"dataset {args.name}: no new task scored below {args.below:g} since "
              f"{args.since}")
        return 0
    print(f"dataset {args.name} v{version.version}: {version.items} items "
          f"(+{len(items)} from feedback below {args.below:g} since {args.since})")
    return 0


async def _append_new(store: DatasetStore, name: str, items: list[DatasetItem], note: str
                      ) -> DatasetVersion | None:
    """Append the items whose ids `name` lacks (creating it when new); None when none is
    new. `items` is narrowed in place to those added."""
    from crewbus.evals.datasets import DatasetExists

    if await store.get(name) is None:
        if not items:
            return None
        try:
            version = await store.create(name, items, note=note)
            print(f"created dataset {name}")
            return version
        except DatasetExists:
            pass  # someone created it meanwhile: add to theirs
    _, known = await store.items(name)
    known_ids = {item.id for item in known}
    items[:] = [item for item in items if item.id not in known_ids]
    if not items:
        return None
    return await store.append(name, items, note=note)


def _print_list(infos: list[DatasetInfo]) -> int:
    if not infos:
        print("no datasets (create one: crewbus dataset create NAME --from items.jsonl)")
        return 0
    rows = [["NAME", "VERSIONS", "ITEMS", "CREATED", "DESCRIPTION"]]
    rows += [[i.name, str(len(i.versions)), str(i.latest.items), _when(i.created_at),
              _cell(i.description)] for i in infos]
    print(_table(rows))
    return 0


async def _show(store: DatasetStore, name: str, version: int | None, limit: int) -> int:
    from crewbus.evals.datasets import DatasetNotFound

    info = await store.get(name)
    if info is None:
        raise DatasetNotFound(name)
    chosen, items = await store.items(name, version)
    print(f"dataset {info.name}" + (f": {info.description}" if info.description else ""))
    print(f"created {_when(info.created_at)}, {len(info.versions)} version"
          f"{'s' if len(info.versions) != 1 else ''}\n")
    rows = [["VERSION", "CREATED", "ITEMS", "DIGEST", "NOTE"]]
    rows += [[f"v{v.version}", _when(v.created_at), str(v.items), v.digest[:12],
              _cell(v.note)] for v in info.versions]
    print(_table(rows))
    shown = items[:max(limit, 0)]
    print(f"\nv{chosen.version}: {'first ' if len(shown) < len(items) else ''}"
          f"{len(shown)} of {len(items)} items")
    if shown:
        rows = [["ID", "INPUT", "EXPECTED"]]
        rows += [[_cell(i.id, 30), _cell(i.input.text),
                  "" if i.expected is None else _cell(json.dumps(i.expected))] for i in shown]
        print(_table(rows))
    return 0


async def _export(store: DatasetStore, name: str, version: int | None, out: Path | None
                  ) -> int:
    data = await store.export(name, version)
    count = data.count(b"\n")
    if out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise ValueError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {count} items of {name} to {out}", file=sys.stderr)
    return 0


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _cell(text: str, width: int = CELL_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)
