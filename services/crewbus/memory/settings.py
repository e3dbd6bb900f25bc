"""MemorySettings: how the memory service stores and embeds, read from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from crewbus.settings import data_dir, load

Backend = Literal["auto", "edge", "local", "server"]
EmbedderName = Literal["hashed", "openai", "minilm"]


class MemorySettings(msgspec.Struct, kw_only=True, frozen=True):
    """Every field `foo` comes from `CREWBUS_MEMORY_FOO`; the Qdrant server from
    `QDRANT_URL` / `QDRANT_API_KEY` (the names Qdrant's own tools use)."""

    backend: Backend = "auto"
    """auto: a server when qdrant_url is set, else Qdrant Edge embedded on disk."""
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    """Never logged: `repr()` hides it."""
    data_dir: str | None = None
    """Embedded store location; default `<CREWBUS_DATA_DIR>/memory`."""
    collection: str = "crewbus_memory"
    embedder: EmbedderName = "hashed"
    embedding_model: str = "text-embedding-3-small"
    embedding_base_url: str | None = None
    embedding_api_key: str | None = None
    """Never logged. Falls back to OPENAI_API_KEY inside the openai client."""
    embedding_dimension: int | None = None
    """For OpenAI-compatible models: asked of the model (if it supports it) and checked."""
    embed_batch: int = 64
    duplicate_threshold: float = 0.98
    """Cosine similarity at or above which a new memory of the same kind is a near-duplicate."""
    timeout_s: float = 10.0
    hybrid: bool = True
    """New embedded (Qdrant Edge) stores also keep BM25 sparse vectors and fuse both
    rankings for text queries. An existing store keeps the layout it was built with."""
    optimize_after: int = 1000
    """Build the embedded index once this many points were written since the last build
    (and at start-up), when the service has been idle for `optimize_idle_s`; 0 = never."""
    optimize_idle_s: float = 2.0

    def resolved_backend(self) -> Literal["edge", "local", "server"]:
        if self.backend != "auto":
            return self.backend
        return "server" if self.qdrant_url else "edge"

    def store_dir(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else data_dir() / "memory"

    def __repr__(self) -> str:
        shown = {
            f: ("***" if f.endswith("api_key") and getattr(self, f) else getattr(self, f))
            for f in self.__struct_fields__
        }
        return "MemorySettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__


def load_memory_settings(env: dict[str, str] | None = None, **overrides: object) -> MemorySettings:
    """Settings from `CREWBUS_MEMORY_*`, plus `QDRANT_URL` and `QDRANT_API_KEY`."""
    source = dict(os.environ if env is None else env)
    for name in ("QDRANT_URL", "QDRANT_API_KEY"):
        if name in source and f"CREWBUS_MEMORY_{name}" not in source:
            source[f"CREWBUS_MEMORY_{name}"] = source[name]
    return load(MemorySettings, prefix="CREWBUS_MEMORY_", env=source, **overrides)
