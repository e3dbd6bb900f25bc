"""The same store tests against every VectorStore backend available here."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crewbus.memory.client_store import ClientStore
from crewbus.memory.edge_store import EdgeStore, EdgeTuning
from crewbus.memory.errors import EmbedderMismatch, StoreLocked
from crewbus.memory.settings import MemorySettings, load_memory_settings
from crewbus.memory.store import StoredPoint, VectorStore
from crewbus_contracts.memory import MemoryFilter

DIM = 16
BACKENDS = ["edge", "local"] + (["server"] if os.environ.get("CREWBUS_TEST_QDRANT_URL") else [])


def open_backend(backend: str, root: Path, collection: str = "mem") -> VectorStore:
    if backend == "edge":
        return EdgeStore(root / "edge", collection)
    if backend == "local":
        return ClientStore(collection, path=root / "local")
    return ClientStore(f"{collection}_{root.name}", url=os.environ["CREWBUS_TEST_QDRANT_URL"])


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def point(i: int, kind: str = "finding", **payload: object) -> StoredPoint:
    return StoredPoint(f"m{i}", unit(i), {"mid": f"m{i}", "kind": kind, "text": f"t{i}", **payload})


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = open_backend(request.param, tmp_path)
    s.ensure_collection(DIM, "test-embedder")
    try:
        yield s
    finally:
        s.close()


def test_search_finds_the_nearest_point_first(store: VectorStore) -> None:
    store.upsert([point(i) for i in range(20)])
    found = store.search(unit(7), 3)
    assert found[0].id == "m7"
    assert found[0].score == pytest.approx(1.0, abs=1e-4)
    assert found[0].payload["text"] == "t7"


def test_filters_on_kind_task_and_source_are_exact(store: VectorStore) -> None:
    store.upsert(
        [point(i, "finding", task_id="t1", source="a.md") for i in range(5)]
        + [point(i, "critique", task_id="t2", source="b.md") for i in range(5, 10)]
    )
    assert {f.id for f in store.search(unit(1), 10, MemoryFilter(kind="critique"))} == {
        f"m{i}" for i in range(5, 10)
    }
    assert len(store.search(unit(1), 10, MemoryFilter(task_id="t1", source="a.md"))) == 5
    assert store.search(unit(1), 10, MemoryFilter(task_id="t1", kind="critique")) == []


def test_upsert_with_the_same_id_replaces(store: VectorStore) -> None:
    store.upsert([point(1)])
    store.upsert([StoredPoint("m1", unit(1), {"mid": "m1", "kind": "result", "text": "new"})])
    assert store.count_by_kind() == {"result": 1}
    assert store.search(unit(1), 1)[0].payload["text"] == "new"


def test_delete_by_ids_and_by_filter_counts_what_was_there(store: VectorStore) -> None:
    store.upsert([point(i, "finding" if i < 6 else "task") for i in range(10)])
    assert store.delete(["m0", "m1", "missing"]) == 2
    assert store.delete_where(MemoryFilter(kind="task")) == 4
    assert store.count_by_kind() == {"finding": 4}


def test_min_score_drops_far_points(store: VectorStore) -> None:
    store.upsert([point(i) for i in range(10)])
    assert [f.id for f in store.search(unit(3), 10, min_score=0.999)] == ["m3"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reopened_store_keeps_its_points(backend: str, tmp_path: Path) -> None:
    if backend == "server":
        pytest.skip("a server outlives the test anyway")
    s = open_backend(backend, tmp_path)
    s.ensure_collection(DIM, "test-embedder")
    s.upsert([point(i) for i in range(10)])
    s.close()
    s = open_backend(backend, tmp_path)
    s.ensure_collection(DIM, "test-embedder")
    try:
        assert s.count_by_kind() == {"finding": 10}
        assert s.search(unit(4), 1)[0].id == "m4"
    finally:
        s.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_collection_built_by_another_embedder_is_refused(backend: str, tmp_path: Path) -> None:
    s = open_backend(backend, tmp_path)
    s.ensure_collection(DIM, "embedder-a")
    s.close()
    s = open_backend(backend, tmp_path)
    try:
        with pytest.raises(EmbedderMismatch, match="embedder-a"):
            s.ensure_collection(DIM, "embedder-b")
    finally:
        s.close()


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_a_second_owner_of_an_embedded_store_is_refused(backend: str, tmp_path: Path) -> None:
    first = open_backend(backend, tmp_path)
    try:
        with pytest.raises(StoreLocked, match="Qdrant server"):
            open_backend(backend, tmp_path)
    finally:
        first.close()
    open_backend(backend, tmp_path).close()  # released on close


def test_a_text_query_on_a_hybrid_shard_is_fused_but_scored_by_cosine(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path / "edge", "mem")
    s.ensure_collection(DIM, "test-embedder")
    try:
        s.upsert([point(i) for i in range(10)]
                 + [StoredPoint("w", unit(99), {"mid": "w", "kind": "document",
                                                "text": "zeppelin hangar maintenance"})])
        found = s.search(unit(3), 3, text="zeppelin hangar")
        assert {f.id for f in found} >= {"m3", "w"}  # the dense match and the word match
        by_id = {f.id: f.score for f in found}
        assert by_id["m3"] == pytest.approx(1.0, abs=1e-4)
        assert by_id["w"] == pytest.approx(float(np.dot(unit(3), unit(99))), abs=1e-4)
        assert s.search(unit(3), 3, min_score=0.99, text="zeppelin hangar")[0].id == "m3"
        assert [f.id for f in s.search(unit(3), 3, min_score=0.99, text="zeppelin")] == ["m3"]
    finally:
        s.close()


def test_a_dense_only_shard_keeps_its_layout_when_reopened(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path / "edge", "mem", hybrid=False)
    s.ensure_collection(DIM, "test-embedder")
    s.upsert([point(i) for i in range(5)])
    s.close()
    reopened = EdgeStore(tmp_path / "edge", "mem")  # hybrid by default for new shards only
    reopened.ensure_collection(DIM, "test-embedder")
    try:
        assert reopened.hybrid is False
        assert reopened.search(unit(2), 1, text="t2")[0].id == "m2"
        reopened.upsert([point(9)])
        assert reopened.search(unit(9), 1)[0].id == "m9"
    finally:
        reopened.close()


def _dense_config(path: Path) -> dict[str, object]:
    vectors = json.loads((path / "edge_config.json").read_text())["vectors"]
    return dict(next(iter(vectors.values())))


def test_a_new_edge_shard_is_built_for_a_million_memories(tmp_path: Path) -> None:
    """ef_construct 64 over an int8 copy (docs/embedders.md, Scale); hybrid shards too."""
    for hybrid in (False, True):
        s = EdgeStore(tmp_path / "edge", f"mem{hybrid}", hybrid=hybrid)
        s.ensure_collection(DIM, "test-embedder")
        s.upsert([point(i) for i in range(5)])
        assert s.search(unit(2), 1, text="t2")[0].id == "m2"
        s.close()
        config = _dense_config(tmp_path / "edge" / f"mem{hybrid}")
        assert config["hnsw_config"]["ef_construct"] == 64  # type: ignore[index]
        assert config["quantization_config"]["scalar"]["type"] == "int8"  # type: ignore[index]


def test_an_existing_edge_shard_keeps_its_graph(tmp_path: Path) -> None:
    old = EdgeTuning(ef_construct=100, int8=False)
    s = EdgeStore(tmp_path / "edge", "mem", hybrid=False, tuning=old)
    s.ensure_collection(DIM, "test-embedder")
    s.upsert([point(i) for i in range(5)])
    s.close()
    reopened = EdgeStore(tmp_path / "edge", "mem")  # today's defaults
    reopened.ensure_collection(DIM, "test-embedder")
    try:
        assert reopened.search(unit(4), 1)[0].id == "m4"
    finally:
        reopened.close()
    config = _dense_config(tmp_path / "edge" / "mem")
    assert config["hnsw_config"]["ef_construct"] == 100  # type: ignore[index]
    assert "quantization_config" not in config or config["quantization_config"] is None


def test_the_search_beam_widens_with_the_collection() -> None:
    tuning = EdgeTuning(search_ef=128, large_ef=512, large_from=200_000)
    assert tuning.beam(0) == 128
    assert tuning.beam(199_999) == 128
    assert tuning.beam(200_000) == 512
    assert EdgeTuning(search_ef=None).beam(10) is None  # Qdrant's own default
    settings = load_memory_settings({"CREWBUS_MEMORY_EDGE_SEARCH_EF": "0",
                                     "CREWBUS_MEMORY_EDGE_LARGE_FROM": "10",
                                     "CREWBUS_MEMORY_EDGE_EF_CONSTRUCT": "32"})
    picked = settings.edge_tuning()
    assert (picked.beam(9), picked.beam(10), picked.ef_construct) == (None, 512, 32)
    assert MemorySettings().edge_tuning() == EdgeTuning()


def test_a_store_searches_with_the_beam_of_its_size(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path / "edge", "mem", hybrid=False,
                  tuning=EdgeTuning(search_ef=128, large_ef=512, large_from=4))
    s.ensure_collection(DIM, "test-embedder")
    try:
        s.upsert([point(i) for i in range(3)])
        params = s.search_params()
        assert params is not None and params.hnsw_ef == 128
        s.upsert([point(3)])
        params = s.search_params()
        assert params is not None and params.hnsw_ef == 512
        assert s.search(unit(3), 1)[0].id == "m3"
    finally:
        s.close()
