"""Mixed-precision (FP16) graphs: FP16 compute, with the ops that lose accuracy or overflow in FP16
kept in FP32 and the graph's inputs and outputs left FP32.

Made with ONNX Runtime's ``float16`` converter (``onnxruntime.transformers``: onnxconverter-common's
``convert_float_to_float16``, maintained inside ONNX Runtime), whose block lists keep op types and
nodes in FP32 and put Casts around them. Measured on these graphs: onnxconverter-common 1.16 left
an FP32 Softmax feeding an FP16 MatMul (a graph the checker refuses), and both emit one Cast name
twice when an FP16 tensor feeds two blocked nodes (Sin and Cos of SAM's point encoding, TinyViT's
convolutions); the repeats, identical, are dropped after conversion.

These graphs are what TensorRT 11 builds in FP16 (strongly typed networks take their precision
from the graph, not from builder flags) and what FP16 execution elsewhere runs.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

#: Op types computed in FP32 inside an FP16 graph: normalisation (mean and variance of many
#: values), softmax (exp overflows at 11), reductions and powers (sums of squares overflow at
#: 65504) and the square roots that follow them. The one list of both FP16 paths: this graph
#: (TensorRT 11, strongly typed) and TensorRT 10's per-layer pins (``tensorrt.recipe``).
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceSumSquare",
            "ReduceL2", "ReduceMax", "Pow", "Sqrt")
#: Ops whose whole input subgraph stays FP32: SAM's Fourier features of point coordinates
#: (sin/cos of arguments up to ~20 rad lose two digits in FP16).
FP32_SUBGRAPH_ROOTS = ("Sin", "Cos")


def upstream_nodes(model, roots=FP32_SUBGRAPH_ROOTS) -> list[str]:
    """Names of the nodes of type ``roots`` and of every node they depend on."""
    producer = {out: node for node in model.graph.node for out in node.output}
    todo = [n for n in model.graph.node if n.op_type in roots]
    seen: dict[str, object] = {}
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen[node.name] = node
        todo.extend(producer[i] for i in node.input if i in producer)
    return sorted(seen)


def to_fp16(model, *, fp32_ops=FP32_OPS):
    """``model`` (an FP32 ``onnx.ModelProto``) as a mixed-precision graph with FP32 inputs/outputs."""
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{i}"  # the node block list is by name
    wrapped = OnnxModel(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "float32 number ... truncated to 1e-07": expected
        wrapped.convert_float_to_float16(
            keep_io_types=True, op_block_list=sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(fp32_ops)),
            node_block_list=upstream_nodes(model))
    _dedupe_casts(wrapped.model)
    wrapped.topological_sort()
    return wrapped.model


def _dedupe_casts(model) -> None:
    """Drop the converter's repeated Casts: one FP16 tensor feeding several blocked nodes gets one
    ``X_cast_to_fp32`` per consumer, all identical (same input, type and output name), which breaks
    single assignment. A repeat that is not identical is a converter bug to surface, not hide."""
    from s3pot.core.errors import ExportError

    seen: dict[str, object] = {}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in seen:
            first = seen[node.output[0]]
            if list(first.input) != list(node.input) or first.attribute != node.attribute:
                raise ExportError(f"FP16 conversion: two different Casts write {node.output[0]!r}")
            continue
        if node.op_type == "Cast":
            seen[node.output[0]] = node
        keep.append(node)
    if len(keep) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(keep)


def fp16_path(path: Path) -> Path:
    """``encoder.onnx`` -> ``encoder.fp16.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.fp16{path.suffix}")


def count_fp16_nodes(model) -> tuple[int, int]:
    """(nodes computing in FP16, all nodes): a node counts as FP16 when an input or output it
    produces is declared FP16 in the graph's value info."""
    import onnx

    half = {v.name for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)
            if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    half |= {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    nodes = [n for n in model.graph.node if n.op_type != "Cast"]
    return sum(any(o in half for o in (*n.input, *n.output)) for n in nodes), len(nodes)
