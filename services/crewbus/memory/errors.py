"""What can go wrong inside the memory service; each maps to one ErrorReply code."""

from __future__ import annotations

from crewbus_contracts.errors import ErrorCode


class MemoryServiceError(Exception):
    """Base of the memory service's errors; `code` is what the caller sees."""

    code: ErrorCode = "internal_error"


class MemoryUnavailable(MemoryServiceError):
    """The vector store cannot be reached or opened."""

    code: ErrorCode = "memory_unavailable"


class MemoryStarting(MemoryServiceError):
    """The service answers but is still opening its store: a write is worth retrying."""

    code: ErrorCode = "memory_starting"


class StoreLocked(MemoryUnavailable):
    """Another process owns the embedded store in this data directory."""

    def __init__(self, data_dir: str, holder: str) -> None:
        super().__init__(
            f"the embedded memory store in {data_dir} is already owned by another memory "
            f"service ({holder}); an embedded store belongs to one process. To run several "
            "memory services, point them all at a Qdrant server (set QDRANT_URL)."
        )
        self.data_dir = data_dir
        self.holder = holder


class EmbedderUnavailable(MemoryUnavailable):
    """The configured embedder cannot run here (its packages are missing): waiting will
    not fix it, so the service refuses to start and says what to install or set."""


class EmbedderMismatch(MemoryServiceError):
    """The collection was built by another embedder; mixing vectors would be silent garbage."""

    code: ErrorCode = "embedder_mismatch"

    def __init__(self, collection: str, stored: str, stored_dim: int, wanted: str, dim: int):
        super().__init__(
            f"collection {collection!r} was built with embedder {stored!r} ({stored_dim} dims) "
            f"but this service uses {wanted!r} ({dim} dims); re-embed it with `crewbus memory "
            "reindex` (memory service stopped), or set CREWBUS_MEMORY_EMBEDDER back, or use "
            "another collection name (CREWBUS_MEMORY_COLLECTION)"
        )


class InvalidVector(MemoryServiceError):
    """A caller-supplied vector does not fit the collection."""

    code: ErrorCode = "invalid_vector"


class EmbeddingFailed(MemoryServiceError):
    """The embedder could not turn text into vectors (e.g. the embeddings API failed)."""

    code: ErrorCode = "embedding_failed"
