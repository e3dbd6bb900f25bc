"""Datasets: strict JSONL import, versions on a real nats-server (KV index + object store),
concurrent writers, items taken from a finished task, and the `crewbus dataset` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from crewbus import cli
from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.evals.datasets import (
    DatasetExists,
    DatasetNotFound,
    DatasetStore,
    DatasetVersionNotFound,
    InvalidDatasetName,
    ItemsAlreadyInDataset,
)
from crewbus.evals.jsonl import (
    MAX_REPORTED,
    DatasetInvalid,
    NoItems,
    canonical_jsonl,
    digest,
    parse_jsonl,
)
from crewbus.llm.simulated import SimulatedModel
from crewbus.settings import BusSettings
from crewbus.tracing.reader import read_trace
from crewbus_contracts import SubmitTask, TaskCompleted, subjects
from crewbus_contracts.evals import DatasetItem, ItemInput
from crewbus_contracts.traces import Span
from tests.stack import final_event, in_process_stack

pytestmark = pytest.mark.anyio


def jsonl(*items: object) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def item(item_id: str, text: str = "What is 2 + 2?", **fields: object) -> DatasetItem:
    return DatasetItem(id=item_id, input=ItemInput(text=text), **fields)  # type: ignore[arg-type]


# -- JSONL ------------------------------------------------------------------------------

def test_every_bad_line_is_reported_with_its_number_and_reason() -> None:
    data = b"\n".join([
        b'{"id": "a", "input": "2 + 2"}',
        b"",
        b'{"id": "b", "input": {"text": "   "}}',
        b"[1, 2]",
        b'{"id": "a", "input": "again"}',
        b'{"id": "c", "input": {"text": "x", "limits": {"max_rounds": "many"}}}',
        b'{"id": "d", "expcted": "4", "input": "x"}',
        b'{"input": "no id"}',
        b'{"id": "' + b"x" * 201 + b'", "input": "long id"}',
        b'{"id": "e"}',
        b'{"id": "f", "input": {"text": "x", "limits": {"max_round": 1}}}',
        b'{"id": 7, "input": "x"}',
        b'{"id": "g", "input": ',
        b'{"id": "h", "input": "fine", "expected": {"n": 4}}',
    ])
    with pytest.raises(DatasetInvalid) as caught:
        parse_jsonl(data)
    problems = dict(caught.value.problems)
    assert sorted(problems) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert "blank" in problems[3] and "$.input" in problems[3]
    assert "got an array" in problems[4]
    assert problems[5] == "duplicate id 'a' (first on line 1)"
    assert "`$.input.limits.max_rounds`" in problems[6]
    assert "`$.expcted`" in problems[7] and "did you mean `expected`" in problems[7]
    assert "`id`" in problems[8]
    assert "<= 200" in problems[9] and "$.id" in problems[9]
    assert "`input`" in problems[10]
    assert "`$.input.limits.max_round`" in problems[11]
    assert "Expected `str`, got `int`" in problems[12]
    assert problems[13].startswith("invalid JSON")
    message = str(caught.value).splitlines()
    assert message[0] == "11 invalid lines, nothing imported:"
    assert message[1].startswith("line 3: ") and len(message) == 12


def test_past_the_cap_the_remaining_bad_lines_are_counted() -> None:
    data = b"\n".join(b"not json" for _ in range(MAX_REPORTED + 5))
    with pytest.raises(DatasetInvalid) as caught:
        parse_jsonl(data)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 + MAX_REPORTED + 1
    assert lines[-1] == "and 5 more"
    assert len(caught.value.problems) == MAX_REPORTED + 5


def test_a_file_of_blank_lines_is_refused() -> None:
    with pytest.raises(NoItems):
        parse_jsonl(b"\n  \n\r\n")


def test_the_short_input_and_the_object_input_are_the_same_canonical_item() -> None:
    short = parse_jsonl(jsonl({"id": "a", "input": "2 + 2", "expected": {"b": 1, "a": 2}}))
    full = parse_jsonl(b"\xef\xbb\xbf" + jsonl(
        {"expected": {"a": 2, "b": 1}, "input": {"text": "2 + 2", "metadata": {}}, "id": "a"}))
    assert short == full
    assert canonical_jsonl(short) == canonical_jsonl(full)
    expected = b'{"id":"a","input":{"text":"2 + 2"},"expected":{"a":2,"b":1}}\n'
    assert canonical_jsonl(short) == expected
    assert digest(canonical_jsonl(short)) == digest(canonical_jsonl(full))


def test_canonical_jsonl_reads_back_to_the_same_items() -> None:
    items = parse_jsonl(jsonl(
        {"id": "a", "input": {"text": "x", "limits": {"max_rounds": 1}, "metadata": {"k": "v"}},
         "expected": [1, "two"], "metadata": {"kind": "math"}, "source_task_id": "t1"},
        {"id": "b", "input": "ü ✓", "expected": 0}))
    again = parse_jsonl(canonical_jsonl(items))
    assert again == items
    assert again[0].input.limits is not None and again[0].input.limits.max_rounds == 1
    assert again[1].expected == 0  # a falsy expected is kept, not dropped as a default


# -- The store on the bus --------------------------------------------------------------

async def live_objects(nc: NATS) -> list[str]:
    objects = await nc.jetstream().object_store(subjects.DATASETS_OBJECTS)
    try:
        return sorted(o.name for o in await objects.list() if not o.deleted)
    except NotFoundError:
        return []


async def index_revision(nc: NATS, name: str) -> int | None:
    entry = await (await nc.jetstream().key_value(subjects.DATASETS_KV)).get(name)
    return entry.revision


async def test_versions_are_immutable_and_an_export_of_v1_after_v2_is_still_v1(nc: NATS) -> None:
    store = DatasetStore(nc.jetstream())
    v1 = await store.create("arith", [item("a"), item("b", "3 * 7")], description="sums",
                            note="first")
    v2 = await store.append("arith", [item("c", "10 / 4", expected="2.5")], note="more")
    v3 = await store.add_version("arith", [item("z", "1 + 1")], note="replaced")
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert (v1.items, v2.items, v3.items) == (2, 3, 1)

    info = await store.get("arith")
    assert info is not None and info.description == "sums"
    assert [v.note for v in info.versions] == ["first", "more", "replaced"]
    pinned, items = await store.items("arith", 1)
    assert pinned == v1 and [i.id for i in items] == ["a", "b"]
    latest, items = await store.items("arith")
    assert latest == v3 and [i.id for i in items] == ["z"]
    assert [i.id for i in (await store.items("arith", 2))[1]] == ["a", "b", "c"]

    exported = await store.export("arith", 1)
    assert digest(exported) == v1.digest
    copy = await store.create("arith-copy", parse_jsonl(exported))
    assert copy.digest == v1.digest  # the export goes back in unchanged
    assert [i.name for i in await store.list()] == ["arith", "arith-copy"]

    with pytest.raises(DatasetVersionNotFound, match=re.escape("no version 9 (versions 1..3)")):
        await store.items("arith", 9)
    with pytest.raises(DatasetNotFound, match="no dataset 'nosuch'"):
        await store.items("nosuch")
    with pytest.raises(DatasetNotFound):
        await store.append("nosuch", [item("a")])
    with pytest.raises(DatasetExists):
        await store.create("arith", [item("a")])
    with pytest.raises(InvalidDatasetName):
        await store.create("no spaces", [item("a")])


async def test_refused_items_write_nothing_to_the_index_or_the_object_store(nc: NATS) -> None:
    store = DatasetStore(nc.jetstream())
    await store.create("kept", [item("a"), item("b")])
    revision, objects = await index_revision(nc, "kept"), await live_objects(nc)

    with pytest.raises(ItemsAlreadyInDataset, match="already has 1 of these ids: 'b'"):
        await store.append("kept", [item("c"), item("b")])
    duplicate = re.escape("item 2: duplicate id 'c' (first on item 1)")
    with pytest.raises(DatasetInvalid, match=duplicate):
        await store.append("kept", [item("c"), item("c")])
    with pytest.raises(DatasetInvalid, match=r"<= 20000 - at `\$.input.text`"):
        await store.add_version("kept", [item("c", text="x" * 20_001)])
    with pytest.raises(ValueError, match="blank"):  # refused as soon as it is built
        item("c", text="  ")
    with pytest.raises(DatasetInvalid, match=r"\$.id"):
        await store.add_version("kept", [item("x" * 201)])
    with pytest.raises(NoItems):
        await store.add_version("kept", [])
    with pytest.raises(DatasetInvalid):
        await store.create("never", [item("a"), item("a")])

    assert await index_revision(nc, "kept") == revision
    assert await live_objects(nc) == objects
    assert await store.get("never") is None
    info = await store.get("kept")
    assert info is not None and len(info.versions) == 1


async def test_concurrent_appends_all_land_numbered_in_order(nats_server: NatsServer) -> None:
    writers = 6
    connections = [await nats.connect(nats_server.url) for _ in range(writers + 1)]
    try:
        stores = [DatasetStore(c.jetstream()) for c in connections]
        await stores[0].create("busy", [item("seed")])

        async def append(n: int) -> None:
            await stores[n + 1].append("busy", [item(f"w{n}")], note=f"writer {n}")

        async with anyio.create_task_group() as tg:
            for n in range(writers):
                tg.start_soon(append, n)

        info = await stores[0].get("busy")
        assert info is not None
        assert [v.version for v in info.versions] == list(range(1, writers + 2))
        assert [v.items for v in info.versions] == list(range(1, writers + 2))
        _, items = await stores[0].items("busy")
        assert sorted(i.id for i in items) == sorted(["seed", *(f"w{n}" for n in range(writers))])
        for version in info.versions:  # every version reads back and matches its digest
            await stores[0].items("busy", version.version)
        # The losers of each race deleted their objects: one live object per version.
        assert await live_objects(connections[0]) == sorted(v.object_name for v in info.versions)
    finally:
        for c in connections:
            await c.close()


async def test_reading_a_bus_without_datasets_creates_nothing_and_topology_creates_them(
    nc: NATS, nats_server: NatsServer
) -> None:
    js = nc.jetstream()
    store = DatasetStore(js)
    assert await store.list() == []
    assert await store.get("anything") is None
    with pytest.raises(DatasetNotFound):
        await store.export("anything")
    with pytest.raises(NotFoundError):
        await js.key_value(subjects.DATASETS_KV)

    await ensure_topology(js, BusSettings(nats_url=nats_server.url))
    await js.key_value(subjects.DATASETS_KV)
    await js.object_store(subjects.DATASETS_OBJECTS)
    assert await store.list() == []


# -- The CLI ----------------------------------------------------------------------------

async def crewbus(capsys: pytest.CaptureFixture[str], url: str, *argv: str
                  ) -> tuple[int, str, str]:
    """`crewbus dataset ...` through the real entry point, in a thread (it runs its own
    event loop); returns the exit code, stdout and stderr."""
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(cli.main, ["dataset", *argv, "--nats", url])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


async def test_the_dataset_commands_round_trip_a_file(
    nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    first = tmp_path / "items.jsonl"
    first.write_bytes(jsonl({"id": "add-1", "input": "What is 17 + 25?", "expected": "42"},
                            {"id": "add-2", "input": {"text": "What is 3 * 7?"},
                             "expected": "21", "metadata": {"kind": "arithmetic"}}))
    more = tmp_path / "more.jsonl"
    more.write_bytes(jsonl({"id": "conv-1", "input": "5 km in metres?", "expected": 5000}))

    code, out, _ = await crewbus(capsys, url, "list")
    assert code == 0 and out.startswith("no datasets")
    code, out, _ = await crewbus(capsys, url, "create", "arith", "--from", str(first),
                                 "--description", "small sums")
    assert (code, out) == (0, "created dataset arith v1: 2 items\n")
    code, out, _ = await crewbus(capsys, url, "add", "arith", "--from", str(more))
    assert (code, out) == (0, "dataset arith v2: 3 items (+1)\n")

    code, out, _ = await crewbus(capsys, url, "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "VERSIONS", "ITEMS", "CREATED", "DESCRIPTION"]
    assert row.split()[:3] == ["arith", "2", "3"] and row.endswith("small sums")

    code, out, _ = await crewbus(capsys, url, "show", "arith", "--limit", "2")
    assert code == 0
    assert "dataset arith: small sums" in out and "2 versions" in out
    assert "v2: first 2 of 3 items" in out and "What is 17 + 25?" in out
    assert "conv-1" not in out
    code, out, _ = await crewbus(capsys, url, "show", "arith", "--version", "1")
    assert code == 0 and "v1: 2 of 2 items" in out

    code, exported, _ = await crewbus(capsys, url, "export", "arith", "--version", "1")
    assert code == 0
    assert [i.id for i in parse_jsonl(exported.encode())] == ["add-1", "add-2"]
    out_file = tmp_path / "v2.jsonl"
    code, _, err = await crewbus(capsys, url, "export", "arith", "--out", str(out_file))
    assert code == 0 and "wrote 3 items" in err
    code, out, _ = await crewbus(capsys, url, "create", "arith-copy", "--from", str(out_file))
    assert code == 0
    nc = await nats.connect(url)
    try:
        store = DatasetStore(nc.jetstream())
        original, copy = await store.get("arith"), await store.get("arith-copy")
        assert original is not None and copy is not None
        assert copy.latest.digest == original.latest.digest
    finally:
        await nc.close()

    code, out, _ = await crewbus(capsys, url, "add", "arith", "--from", str(more), "--replace")
    assert (code, out) == (0, "dataset arith v3: 1 items (replaced)\n")


async def test_dataset_command_errors_are_one_line_except_a_bad_file(
    nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl({"id": "a", "input": "x"}))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl({"id": "a", "input": "x"}, {"id": "a", "input": "y"}, [1],
                          {"id": "b", "input": {"text": ""}}))

    code, _, err = await crewbus(capsys, url, "create", "broken", "--from", str(bad))
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == f"crewbus dataset create: {bad}: 3 invalid lines, nothing imported:"
    assert [line.split(":")[0] for line in lines[1:]] == ["line 2", "line 3", "line 4"]

    code, _, err = await crewbus(capsys, url, "show", "nosuch")
    assert code == 1
    one_line(err, "no dataset 'nosuch'")
    assert (await crewbus(capsys, url, "create", "a", "--from", str(good)))[0] == 0
    code, _, err = await crewbus(capsys, url, "create", "a", "--from", str(good))
    assert code == 1
    one_line(err, "already exists", "dataset add a")
    code, _, err = await crewbus(capsys, url, "add", "a", "--from", str(good))
    assert code == 2
    one_line(err, "already has 1 of these ids: 'a'")
    code, _, err = await crewbus(capsys, url, "export", "a", "--version", "4")
    assert code == 1
    one_line(err, "no version 4")
    code, _, err = await crewbus(capsys, url, "create", "bad name", "--from", str(good))
    assert code == 2
    one_line(err, "invalid dataset name")
    code, _, err = await crewbus(capsys, url, "create", "b", "--from", str(tmp_path / "no"))
    assert code == 2
    one_line(err, "cannot read", "No such file")
    code, _, err = await crewbus(capsys, url, "add", "a", "--from", str(good), "--id", "x")
    assert code == 2
    one_line(err, "--id only goes with --from-task")
    code, _, err = await crewbus(capsys, url, "add", "a", "--from-task", "nosuch")
    assert code == 1
    one_line(err, "crewbus has not run on the NATS server")
    nowhere = f"nats://127.0.0.1:{free_port()}"
    code, _, err = await crewbus(capsys, nowhere, "list")
    assert code == 3
    one_line(err, "crewbus dataset:", f"no NATS server at {nowhere}")


async def wait_for_task_span(js: JetStreamContext, task_id: str) -> Span:
    """The task's own span (written once the task has ended)."""
    with anyio.fail_after(30):
        while True:
            spans = [s for s in await read_trace(js, task_id) if s.kind == "task"]
            if spans:
                return spans[0]
            await anyio.sleep(0.05)


async def test_a_finished_task_becomes_an_item_linked_to_its_trace(
    nats_server: NatsServer, model: SimulatedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    async with in_process_stack(url, model.base_url) as client:
        accepted = await client.submit(SubmitTask(text="What is 17 + 25?",
                                                  metadata={"team": "support"}))
        event = await final_event(client, accepted.task_id, timeout_s=60)
        assert isinstance(event, TaskCompleted), event
        state = await client.state(accepted.task_id)
        assert state is not None
        task_span = await wait_for_task_span(client.js, accepted.task_id)

        task_id = accepted.task_id
        code, out, _ = await crewbus(capsys, url, "add", "prod", "--from-task", task_id,
                                     "--expected", "42")
        assert code == 0, out
        assert out.splitlines() == ["created dataset prod",
                                    f"dataset prod v1: 1 items (+1: {task_id} from task {task_id})"]
        code, out, _ = await crewbus(capsys, url, "add", "prod", "--from-task", task_id,
                                     "--id", "sum-json", "--expected-json", '{"answer": 42}')
        assert code == 0 and "dataset prod v2: 2 items" in out
        code, _, err = await crewbus(capsys, url, "add", "prod", "--from-task", task_id)
        assert code == 2
        one_line(err, f"already has 1 of these ids: '{task_id}'")
        code, _, err = await crewbus(capsys, url, "add", "prod", "--from-task", "tnosuch")
        assert code == 1
        one_line(err, "no task tnosuch")
        code, _, err = await crewbus(capsys, url, "add", "prod", "--from-task", task_id,
                                     "--expected-json", "{oops")
        assert code == 2
        one_line(err, "--expected-json is not JSON")

        version, items = await DatasetStore(client.js).items("prod")
    assert version.version == 2 and version.note == f"from task {task_id}"
    first, second = items
    assert first.id == task_id and first.source_task_id == task_id
    assert first.input.text == "What is 17 + 25?" and first.input.metadata == {"team": "support"}
    assert first.input.limits is None  # the task ran with the default limits
    assert first.expected == "42"
    assert first.metadata["trace_id"] == task_span.trace_id
    assert first.metadata["task_status"] == "completed"
    assert first.metadata["task_answer"] == event.result.answer
    assert second.id == "sum-json" and second.expected == {"answer": 42}
    assert msgspec.json.decode(msgspec.json.encode(second), type=DatasetItem) == second
