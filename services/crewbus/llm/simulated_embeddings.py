"""Deterministic embeddings for the simulated model: hashed bag of words, unit length.

Texts that share words get a high cosine similarity, so memory recall can be tested
without a real embedding model.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct

DEFAULT_DIMENSIONS = 256
_WORD = re.compile(r"\w+")


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit vector: each word adds ±1 at a position chosen by its hash."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % dimensions] += 1.0 if (digest >> 32) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


def as_base64(vector: list[float]) -> str:
    """The wire form the openai client asks for by default: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
