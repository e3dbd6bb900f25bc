"""MemorySettings: how the memory service stores and embeds, read from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import msgspec

from crewbus.settings import data_dir, load

if TYPE_CHECKING:
    from crewbus.memory.edge_store import EdgeTuning

Backend = Literal["auto", "edge", "local", "server"]
EmbedderName = Literal[
    "minilm-onnx", "minilm-onnx-int8", "minilm-onnx-int8-row", "hashed", "openai", "minilm"
]
ENV_PREFIX = "CREWBUS_MEMORY_"


class MemorySettings(msgspec.Struct, kw_only=True, frozen=True):
    """Every field `foo` comes from `CREWBUS_MEMORY_FOO`; the Qdrant server from
    `QDRANT_URL` / `QDRANT_API_KEY` (the names Qdrant's own tools use)."""

    env_fallbacks: ClassVar[dict[str, tuple[str, ...]]] = {
        "qdrant_url": ("QDRANT_URL",),
        "qdrant_api_key": ("QDRANT_API_KEY",),
    }
    env_shown_defaults: ClassVar[dict[str, str]] = {"data_dir": "`$CREWBUS_DATA_DIR/memory`"}

    backend: Backend = "auto"
    """`auto` (server if `QDRANT_URL`, else `edge`: Qdrant Edge embedded on disk), `edge`,
    `local`, `server`."""
    qdrant_url: str | None = None
    """Qdrant server URL."""
    qdrant_api_key: str | None = None
    """Qdrant server key; never logged (`repr` shows `***`)."""
    data_dir: str | None = None
    """Embedded store directory."""
    collection: str = "crewbus_memory"
    """Collection (Edge: shard directory) name."""
    embedder: EmbedderName = "minilm-onnx"
    """`minilm-onnx` (all-MiniLM-L6-v2 on onnxruntime, shipped), `minilm-onnx-int8` (the
    same model in int8 arithmetic: a query embeds ~2x faster; other vectors, so reindex),
    `minilm-onnx-int8-row` (int8 with a scale per token, so it batches; other vectors),
    `hashed` (no model: words, not meaning), `openai`, `minilm` (torch; the `minilm`
    extra)."""
    embedding_model: str = "text-embedding-3-small"
    """Embedding model, for `openai`."""
    embedding_base_url: str | None = None
    """Any OpenAI-compatible endpoint (vLLM, Ollama, …)."""
    embedding_api_key: str | None = None
    """Else `OPENAI_API_KEY` (inside the openai client); never logged."""
    embedding_dimension: int | None = None
    """Asked of models that support `dimensions`, and checked."""
    embed_batch: int = 64
    """Texts per embeddings call (per model run for `minilm-onnx`)."""
    embed_threads: int = 2
    """onnxruntime threads for `minilm-onnx`; explicit, so processes sharing a machine
    don't each take every core."""
    model_cache: str | None = None
    """Where `minilm-onnx-int8` keeps the int8 model it builds once from the shipped one
    (default `$XDG_CACHE_HOME/crewbus`, else `~/.cache/crewbus`)."""
    duplicate_threshold: float = 0.98
    """Near-duplicate cosine: a new memory of the same kind this similar is a duplicate."""
    timeout_s: float = 10.0
    """Qdrant server and embeddings timeouts."""
    hybrid: bool | None = None
    """New Edge stores also rank by BM25 and fuse (see Hybrid search). Unset: on for
    `hashed` (it helps), off for the models (it costs them recall on both sets). An existing
    store keeps the layout it was built with."""
    optimize_after: int = 1000
    """Build the Edge index after this many new points (0 = never), when idle (and at
    start-up)."""
    optimize_idle_s: float = 2.0
    """How long without requests counts as idle."""
    edge_ef_construct: int = 64
    """HNSW build beam of new Edge shards (Qdrant's default is 100; 64 with int8 builds
    1M memories in ~300 CPU s instead of ~2,800). Existing shards keep theirs."""
    edge_int8: bool = True
    """New Edge shards keep an int8 scalar-quantized copy of the vectors in RAM (built and
    searched on it, rescored with the originals)."""
    edge_search_ef: int = 128
    """HNSW search beam below `edge_large_from` memories (0: Qdrant's default, the graph's
    ef_construct)."""
    edge_search_ef_large: int = 512
    """HNSW search beam from `edge_large_from` memories on (recall@10 0.97 at 1M)."""
    edge_large_from: int = 200_000
    """Collection size from which searches use `edge_search_ef_large`."""
    client_absent_s: float = 2.0
    """How long an agent's or the orchestrator's memory client, having found no memory
    service, skips its searches (each would only wait for a no-responders reply); writes
    are always sent. 0 asks every time."""

    def resolved_backend(self) -> Literal["edge", "local", "server"]:
        if self.backend != "auto":
            return self.backend
        return "server" if self.qdrant_url else "edge"

    def uses_hybrid(self) -> bool:
        """Whether a new Edge store keeps BM25 beside the dense vector (measured in
        bench/embedder_quality.py: fusion lifts hashed, lowers MiniLM)."""
        return self.hybrid if self.hybrid is not None else self.embedder == "hashed"

    def edge_tuning(self) -> EdgeTuning:
        from crewbus.memory.edge_store import EdgeTuning  # imports qdrant_edge

        return EdgeTuning(
            ef_construct=self.edge_ef_construct, int8=self.edge_int8,
            search_ef=self.edge_search_ef or None, large_ef=self.edge_search_ef_large,
            large_from=self.edge_large_from,
        )

    def store_dir(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else data_dir() / "memory"

    def __repr__(self) -> str:
        shown = {
            f: ("***" if f.endswith("api_key") and getattr(self, f) else getattr(self, f))
            for f in self.__struct_fields__
        }
        return "MemorySettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__


def load_memory_settings(
    env: Mapping[str, str] | None = None, **overrides: object
) -> MemorySettings:
    """Settings from `CREWBUS_MEMORY_*`, then `QDRANT_URL` and `QDRANT_API_KEY`."""
    return load(MemorySettings, prefix=ENV_PREFIX, env=env, **overrides)
