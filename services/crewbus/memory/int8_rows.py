"""Per-row (per-token) int8 activation quantization for the MiniLM graph: batchable int8.

onnxruntime's `quantize_dynamic` quantizes each MatMul's input with one scale for the
whole tensor, so in a padded batch a text's vector depends on its batch-mates. This
rewrites every `DynamicQuantizeLinear` into one symmetric scale per row (token): Abs,
ReduceMax over the last axis, `QuantizeLinear` per axis on a 2-D view (zero point 128, so
the fast u8s8 kernels apply), then `MatMulIntegerToFloat` with the weights' per-channel
scales and scale 1 for the input, each output row multiplied by its own scale after
(onnxruntime's own fusion of that pattern assumes one input scale, so the fused op is
built here). A token's quantization depends on that token only: batching is exact.
Measured in docs/embedders.md (bench/int8_rows.py). Needs the `onnx` package.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper


def per_row(src: Path, dst: Path) -> int:
    """Rewrite quantize_dynamic's per-tensor activation quantization into per-row."""
    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}

    def const(name: str, value: npt.NDArray[Any]) -> None:
        g.initializer.append(numpy_helper.from_array(value, name))

    const("rowq_one", np.array(1.0, np.float32))
    const("rowq_zp", np.array(128, np.uint8))
    const("rowq_eps", np.array(1e-8, np.float32))
    const("rowq_inv127", np.array(1 / 127, np.float32))
    const("rowq_zero", np.array(0.0, np.float32))
    const("rowq_128", np.array(128.0, np.float32))
    const("rowq_flat", np.array([-1], np.int64))
    consumers = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    producer = {o: n for n in g.node for o in n.output}
    rescale: dict[str, tuple[Any, str, str]] = {}  # final Mul -> (MatMulInteger, w scale, row s)
    drop: set[str] = set()
    widths: dict[str, int] = {}
    for n in g.node:
        if n.op_type != "DynamicQuantizeLinear":
            continue
        for mm in consumers[n.output[0]]:
            widths[n.name] = numpy_helper.to_array(inits[mm.input[1]]).shape[0]
            (cast,) = consumers[mm.output[0]]
            (mul,) = consumers[cast.output[0]]
            scales = producer[mul.input[1]]
            assert scales.op_type == "Mul" and scales.input[0] == n.output[1]
            rescale[mul.name] = (mm, scales.input[1], n.name + "_row_s3")
            drop.update((scales.name, cast.name, mm.name))
    new = []
    for n in g.node:
        if n.op_type == "DynamicQuantizeLinear":
            x, q, p = n.input[0], n.output[0], n.name + "_row"
            const(p + "_2d", np.array([-1, widths[n.name]], np.int64))
            new += [
                helper.make_node("Abs", [x], [p + "_abs"]),
                helper.make_node("ReduceMax", [p + "_abs"], [p + "_max"], axes=[-1], keepdims=1),
                helper.make_node("Max", [p + "_max", "rowq_eps"], [p + "_maxe"]),
                helper.make_node("Mul", [p + "_maxe", "rowq_inv127"], [p + "_s3"]),
                helper.make_node("Reshape", [p + "_s3", "rowq_flat"], [p + "_s1"]),
                helper.make_node("Mul", [p + "_s1", "rowq_zero"], [p + "_z0"]),
                helper.make_node("Add", [p + "_z0", "rowq_128"], [p + "_z1"]),
                helper.make_node("Cast", [p + "_z1"], [p + "_zp1"], to=TensorProto.UINT8),
                helper.make_node("Reshape", [x, p + "_2d"], [p + "_x2"]),
                helper.make_node("QuantizeLinear", [p + "_x2", p + "_s1", p + "_zp1"],
                                 [p + "_q2"], axis=0),
                helper.make_node("Shape", [x], [p + "_shape"]),
                helper.make_node("Reshape", [p + "_q2", p + "_shape"], [q]),
            ]
        elif n.name in drop:
            continue
        elif n.name in rescale:
            mm, w_scale, row_scale = rescale[n.name]
            y = n.output[0]
            new += [
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [mm.input[0], mm.input[1], "rowq_one", w_scale, "rowq_zp", mm.input[3]],
                    [y + "_unscaled"], domain="com.microsoft",
                ),
                helper.make_node("Mul", [y + "_unscaled", row_scale], [y]),
            ]
        else:
            new.append(n)
    del g.node[:]
    g.node.extend(new)
    onnx.save(model, str(dst))
    return len(rescale)
