"""crewbus memory: one service on the bus in front of Qdrant (embedded or server).

Agents use `MemoryClient`; only the memory service opens a `VectorStore`.
"""

from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus.memory.errors import (
    EmbedderMismatch,
    EmbedderUnavailable,
    EmbeddingFailed,
    InvalidVector,
    MemoryServiceError,
    MemoryUnavailable,
    StoreLocked,
)
from crewbus.memory.settings import MemorySettings, load_memory_settings

__all__ = [
    "EmbedderMismatch",
    "EmbedderUnavailable",
    "EmbeddingFailed",
    "InvalidVector",
    "MemoryClient",
    "MemoryClientError",
    "MemoryServiceError",
    "MemorySettings",
    "MemoryUnavailable",
    "StoreLocked",
    "load_memory_settings",
]
