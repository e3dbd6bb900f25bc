"""Open the VectorStore the settings ask for."""

from __future__ import annotations

from crewbus.memory.client_store import ClientStore
from crewbus.memory.edge_store import EdgeStore
from crewbus.memory.settings import MemorySettings
from crewbus.memory.store import VectorStore


def open_store(settings: MemorySettings) -> VectorStore:
    """Qdrant Edge on disk by default; qdrant-client local mode or a Qdrant server on request."""
    backend = settings.resolved_backend()
    if backend == "server":
        if not settings.qdrant_url:
            raise ValueError("backend 'server' needs QDRANT_URL")
        return ClientStore(
            settings.collection,
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key,
            timeout_s=settings.timeout_s,
        )
    if backend == "local":
        return ClientStore(settings.collection, path=settings.store_dir() / "local")
    return EdgeStore(settings.store_dir() / "edge", settings.collection,
                     settings.uses_hybrid(), tuning=settings.edge_tuning())
