"""The memory service on a real nats-server, with the embedded Qdrant Edge store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from crewbus.devstack.nats_server import free_port
from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus.memory.errors import StoreLocked
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings
from crewbus_contracts import subjects
from crewbus_contracts.errors import ErrorReply
from crewbus_contracts.memory import MemoryRecord
from tests.memory_helpers import DEFAULT_EMBEDDER_ID


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings_for(tmp_path: Path, **kw: object) -> MemorySettings:
    return msgspec.structs.replace(MemorySettings(data_dir=str(tmp_path / "memory")), **kw)


@pytest.fixture
async def service(nc: NATS, tmp_path: Path) -> AsyncIterator[MemoryService]:
    svc = await MemoryService(nc, settings_for(tmp_path)).start()
    try:
        yield svc
    finally:
        await svc.stop()


async def raw(nc: NATS, subject: str, payload: bytes) -> ErrorReply | dict[str, object]:
    msg = await nc.request(subject, payload, timeout=30)
    data = msgspec.json.decode(msg.data)
    if data.get("type") == "error_reply":
        return msgspec.convert(data, ErrorReply)
    return dict(data)


@pytest.mark.anyio
async def test_remembered_text_is_found_by_search_with_its_provenance(
    nc: NATS, service: MemoryService
) -> None:
    client = MemoryClient(nc)
    mid = await client.remember(
        "NATS JetStream redelivers unacknowledged messages after ack_wait",
        "finding",
        task_id="task-1",
        source="https://docs.example/jetstream",
    )
    await client.remember("Sourdough needs a fermented starter", "finding", task_id="task-2")
    hits = await client.search("when are unacked messages redelivered", k=2)
    assert hits[0].id == mid
    assert hits[0].source == "https://docs.example/jetstream"
    assert hits[0].task_id == "task-1"
    assert hits[0].kind == "finding"


@pytest.mark.anyio
async def test_filters_restrict_hits_to_kind_and_task(nc: NATS, service: MemoryService) -> None:
    client = MemoryClient(nc)
    await client.upsert(
        [
            MemoryRecord(text="plan used three researcher steps", kind="task", task_id="a"),
            MemoryRecord(
                text="critic: the plan skipped verification", kind="critique", task_id="a"
            ),
            MemoryRecord(text="critic: the answer cited no sources", kind="critique", task_id="b"),
        ]
    )
    critiques = await client.search("plan", k=10, kind="critique")
    assert {h.task_id for h in critiques} == {"a", "b"}
    assert all(h.kind == "critique" for h in critiques)
    only_a = await client.search("plan", k=10, kind="critique", task_id="a")
    assert [h.text for h in only_a] == ["critic: the plan skipped verification"]
    assert (await client.stats()).counts == {"task": 1, "critique": 2}


@pytest.mark.anyio
async def test_near_duplicates_are_not_stored_twice(nc: NATS, service: MemoryService) -> None:
    client = MemoryClient(nc)
    first = await client.remember("The build failed because numpy was missing.", "result")
    again = await client.remember("the build  failed because NumPy was missing.", "result")
    near = await client.upsert(
        [
            MemoryRecord(
                id="custom-1", text="The build failed because numpy was missing!", kind="result"
            )
        ]
    )
    other_kind = await client.remember("The build failed because numpy was missing.", "critique")
    assert again == first
    assert near.ids == [first] and near.duplicates == {"custom-1": first}
    assert other_kind != first
    assert (await client.stats()).counts == {"result": 1, "critique": 1}


@pytest.mark.anyio
async def test_delete_by_id_and_by_filter(nc: NATS, service: MemoryService) -> None:
    client = MemoryClient(nc)
    ids = (
        await client.upsert(
            [
                MemoryRecord(
                    text=f"finding number {i} about topic {i}", kind="finding", task_id=f"t{i % 2}"
                )
                for i in range(6)
            ]
        )
    ).ids
    assert await client.delete([ids[0]]) == 1
    assert await client.delete(task_id="t1") == 3
    assert (await client.stats()).total == 2


@pytest.mark.anyio
async def test_memory_survives_a_restart_of_the_service(nc: NATS, tmp_path: Path) -> None:
    svc = await MemoryService(nc, settings_for(tmp_path)).start()
    client = MemoryClient(nc)
    mid = await client.remember("the executor wrote report.pdf for task 9", "result", task_id="9")
    await svc.stop()
    with pytest.raises(MemoryClientError, match="memory_unavailable"):
        await client.stats()
    svc = await MemoryService(nc, settings_for(tmp_path)).start()
    try:
        hits = await client.search("report written by the executor")
        assert hits[0].id == mid
        stats = await client.stats()
        assert stats.counts == {"result": 1}
        assert stats.backend == "edge" and stats.embedder == DEFAULT_EMBEDDER_ID
        assert stats.dimension == 384
    finally:
        await svc.stop()


@pytest.mark.anyio
async def test_a_second_service_on_the_same_embedded_dir_is_refused(
    nc: NATS, service: MemoryService, tmp_path: Path
) -> None:
    with pytest.raises(StoreLocked, match="Qdrant server"):
        await MemoryService(nc, settings_for(tmp_path)).start()
    assert (await MemoryClient(nc).stats()).backend == "edge"  # the owner still answers


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("payload", "code", "says"),
    [
        (b'{"type":"memory_search","query":"   "}', "invalid_message", "query must not be empty"),
        (b'{"type":"memory_search","query":"x","k":0}', "invalid_message", "k must be between"),
        (b'{"type":"memory_search","vector":[0.1,0.2,0.3]}', "invalid_vector", "384"),
        (
            b'{"type":"memory_search","query":"x","schema_version":9}',
            "unsupported_schema_version",
            "9",
        ),
        (b'{"type":"memory_search",', "malformed_json", "JSON"),
        (b'{"type":"memory_delete"}', "invalid_message", "deleting everything is refused"),
    ],
)
async def test_bad_search_gets_a_clear_error_and_the_service_keeps_answering(
    nc: NATS, service: MemoryService, payload: bytes, code: str, says: str
) -> None:
    subject = subjects.MEMORY_DELETE if b"memory_delete" in payload else subjects.MEMORY_SEARCH
    reply = await raw(nc, subject, payload)
    assert isinstance(reply, ErrorReply)
    assert reply.code == code
    assert says in reply.message
    assert service.errors[code] == 1
    assert await MemoryClient(nc).search("anything at all") == []


@pytest.mark.anyio
async def test_a_newer_callers_fields_are_ignored_and_a_new_request_type_is_refused(
    nc: NATS, service: MemoryService
) -> None:
    """During a rolling upgrade a newer agent may send fields (or a request type) this
    memory service does not know: the fields are ignored at every depth, the type refused."""
    upsert = (b'{"type":"memory_upsert","ttl_s":60,"records":[{"text":"JetStream acks",'
              b'"kind":"finding","embedding_hint":{"lang":"en"}}]}')
    stored = await raw(nc, subjects.MEMORY_UPSERT, upsert)
    assert not isinstance(stored, ErrorReply), stored
    search = (b'{"type":"memory_search","query":"JetStream acks","rerank":true,'
              b'"filter":{"kind":"finding","tenant":"a"}}')
    found = await raw(nc, subjects.MEMORY_SEARCH, search)
    assert not isinstance(found, ErrorReply), found
    assert [h["id"] for h in found["hits"]] == stored["ids"]  # type: ignore[index,union-attr]
    labels = {"reason": "unknown_type", "subject_kind": "other"}  # memory subjects
    before = REGISTRY.get_sample_value("crewbus_bad_input_total", labels) or 0.0
    refused = await raw(nc, subjects.MEMORY_SEARCH, b'{"type":"memory_hybrid_search"}')
    assert isinstance(refused, ErrorReply) and refused.code == "invalid_message"
    assert "'memory_hybrid_search' at `$.type`" in refused.message
    assert "it accepts memory_search" in refused.message
    assert REGISTRY.get_sample_value("crewbus_bad_input_total", labels) == before + 1


@pytest.mark.anyio
async def test_unknown_kind_and_wrong_vector_size_on_upsert_are_refused(
    nc: NATS, service: MemoryService
) -> None:
    bad_kind = await raw(
        nc,
        subjects.MEMORY_UPSERT,
        b'{"type":"memory_upsert","records":[{"text":"x","kind":"gossip"}]}',
    )
    assert isinstance(bad_kind, ErrorReply) and bad_kind.code == "invalid_message"
    assert "gossip" in bad_kind.message and "kind" in bad_kind.message
    client = MemoryClient(nc)
    with pytest.raises(MemoryClientError, match=r"invalid_vector.*3 dimensions"):
        await client.upsert([MemoryRecord(text="x", kind="finding", vector=[1.0, 0.0, 0.0])])
    with pytest.raises(MemoryClientError, match="all zeros"):
        await client.upsert([MemoryRecord(text="x", kind="finding", vector=[0.0] * 384)])
    assert await client.remember("still working", "finding")


@pytest.mark.anyio
async def test_an_unreachable_qdrant_server_gives_clear_errors_not_a_crash(
    nc: NATS, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    svc = await MemoryService(nc, settings_for(tmp_path, qdrant_url=url, timeout_s=2.0)).start()
    client = MemoryClient(nc)
    try:
        for _ in range(2):
            with pytest.raises(MemoryClientError) as err:
                await client.search("anything")
            assert err.value.code == "memory_unavailable"
            assert url in err.value.message
        with pytest.raises(MemoryClientError, match="memory_unavailable"):
            await client.stats()
    finally:
        await svc.stop()


@pytest.mark.anyio
async def test_no_running_service_is_a_clear_error(nc: NATS) -> None:
    with pytest.raises(MemoryClientError, match="no memory service"):
        await MemoryClient(nc, timeout_s=1).search("x")


@pytest.mark.anyio
async def test_the_embedded_index_is_built_when_the_service_is_idle(
    nc: NATS, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, optimize_after=50, optimize_idle_s=0.2)
    service = await MemoryService(nc, settings).start()
    try:
        client = MemoryClient(nc)
        records = [MemoryRecord(text=f"note number {i} about topic {i % 7}", kind="document")
                   for i in range(120)]
        await client.upsert(records, skip_near_duplicates=False)
        assert service.engine is not None and service.engine.unoptimized_points >= 120
        with anyio.fail_after(60):
            while service.engine.unoptimized_points:
                await anyio.sleep(0.1)
        hits = await client.search("note number 42 about topic 0", k=1)
        assert hits[0].text == "note number 42 about topic 0"
    finally:
        await service.stop()
