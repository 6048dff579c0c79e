"""Compiles an export folder's graphs with OpenVINO for the CPU.

OpenVINO reads the ONNX files directly (no conversion step, no second copy of the weights on
disk). Compiling the ViT encoder takes seconds; OpenVINO's own model cache (``CACHE_DIR``) keeps
the compiled blob, keyed by the graph, the OpenVINO version, the device and the configuration,
so later processes load it. It goes beside the graphs (``DIR/.openvino/``) or, when the export
folder is read-only, under ``$XDG_CACHE_HOME/s3pot/openvino/``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.core.io_table import ENCODER
from s3pot.core.machine import first_writable, user_cache_dir

from ..export_folder import ExportFolder

log = logging.getLogger(__name__)

CACHE_FOLDER = ".openvino"
#: s3pot precision -> OpenVINO's INFERENCE_PRECISION_HINT (the graphs stay FP32 on disk).
#: ``int8`` is the quantized encoder of ``s3pot quantize``; what it leaves in floating point, and
#: the other stages, run at ``bf16`` where the CPU has it (see :func:`float_hint`).
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}


def cpu_precisions(core=None) -> list[str]:
    """The s3pot precisions this CPU runs natively in OpenVINO (``bf16`` needs AVX512-BF16 or
    AMX, ``int8`` VNNI or AMX; OpenVINO lists them as optimisation capabilities then)."""
    import openvino as ov

    capabilities = (core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return (["fp32"] + (["bf16"] if "BF16" in capabilities else [])
            + (["int8"] if "INT8" in capabilities else []))


def float_hint(precision: str, available: list[str]) -> str:
    """The inference-precision hint of ``precision`` on a CPU that runs ``available``: INT8's
    floating-point rest falls back to FP32 where there is no BF16."""
    hint = PRECISION_HINTS[precision]
    return "f32" if hint == "bf16" and "bf16" not in available else hint


def cache_dir(export: ExportFolder) -> Path | None:
    """Where compiled blobs are kept: the export's ``.openvino/`` if writable, else the user
    cache; None when neither can be written (then every process compiles)."""
    root = first_writable([export.folder / CACHE_FOLDER, user_cache_dir("openvino")])
    if root is None:
        log.info("no writable folder for OpenVINO's compiled models; compiling in every process")
    return root


def compile_config(precision: str, threads: int = 0, available: list[str] | None = None) -> dict:
    """OpenVINO's CPU configuration for ``precision`` (latency hint: one request uses every core;
    ``threads`` > 0 caps them)."""
    hint = float_hint(precision, available if available is not None else list(PRECISION_HINTS))
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


#: Identity on every finite float32: the bounds of the Clamp that :func:`route_matmuls_to_onednn`
#: appends.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Node types that hold a matrix product's constant weights in a graph OpenVINO read from ONNX.
_WEIGHT_NODES = ("Constant", "Convert")


def route_matmuls_to_onednn(graph) -> int:
    """Append ``Clamp(-FLT_MAX, FLT_MAX)`` to every matrix product with constant 2-D weights
    (after its bias add, when it has one); returns how many.

    OpenVINO's CPU plugin runs an FP32 fully connected layer in MLAS when nothing is fused into
    it, and in oneDNN's brgemm when it carries a post-op. On ViT-B's encoder MLAS is slower where
    the reduction is long: the MLP's second product (4096 x 3072 by 3072 x 768) ran at 149
    GFLOP/s in MLAS against about 195 in brgemm, and the clamp, an identity on finite values
    that OpenVINO fuses as an eltwise post-op, moves all 48 products to brgemm: the encoder took
    5.64 s instead of 6.35 s per image in one side-by-side run (medians of 5), 5.85 s instead of
    6.24 s in another (medians of 6), with the same output bits.
    Where a product already carries a post-op, or a later OpenVINO drops the clamp, nothing
    changes."""
    import openvino.opset13 as ops

    routed = 0
    for node in graph.get_ordered_ops():
        if node.get_type_name() != "MatMul":
            continue
        weights = node.input_value(1)
        if (weights.get_node().get_type_name() not in _WEIGHT_NODES
                or weights.get_partial_shape().rank.get_length() != 2):
            continue
        out = _after_bias(node.output(0))
        consumers = list(out.get_target_inputs())
        clamp = ops.clamp(out, -FLOAT32_MAX, FLOAT32_MAX)
        for consumer in consumers:
            consumer.replace_source_output(clamp.output(0))
        routed += 1
    return routed


def _after_bias(out):
    """``out``, or the output of the bias add that is its only consumer (so that the clamp fuses
    after the bias, which the fully connected layer absorbs)."""
    consumers = list(out.get_target_inputs())
    if len(consumers) != 1 or consumers[0].get_node().get_type_name() != "Add":
        return out
    add, index = consumers[0].get_node(), consumers[0].get_index()
    other = add.input_value(1 - index).get_node()
    return add.output(0) if other.get_type_name() in _WEIGHT_NODES else out


#: What each reduced precision needs of the CPU, for the refusal.
NEEDS = {"bf16": "AVX512-BF16 or AMX", "int8": "VNNI or AMX"}


def compile_stage(core, export: ExportFolder, stage: str, *, precision: str, threads: int = 0,
                  cache: bool = True, model: Path | None = None, static_batch: int | None = None):
    """One stage compiled for the CPU at ``precision`` (latency hint: one request uses every
    core): its graph in the export folder, or ``model`` (the INT8 encoder's IR) when given.

    ``static_batch`` fixes the first input's batch axis (the encoder, which the CPU runner feeds
    one image at a time): OpenVINO then plans its memory once instead of allocating the global
    blocks' 800 MB attention masks in every call. Same outputs, bit for bit; the INT8 encoder
    measured 20% faster (1.8-2.0 s against 2.1-2.6 s per ViT-B image), FP32 unchanged.

    In FP32 the encoder's matrix products are given to oneDNN (:func:`route_matmuls_to_onednn`);
    the other stages measured no faster for it (ViT-B, side by side: FE 56.6 against 55.9 ms, SA
    22.8 both, decoder at 1478 prompts 280 against 277 ms) and keep OpenVINO's choice."""
    if precision not in PRECISION_HINTS:
        raise S3potInputError(f"openvino: expected precision {', '.join(PRECISION_HINTS)}, got "
                              f"{precision!r}")
    available = cpu_precisions(core)
    if precision not in available:
        raise S3potInputError(f"openvino: precision {precision!r} needs a CPU with "
                              f"{NEEDS[precision]}; this one runs {', '.join(available)}")
    config = compile_config(precision, threads, available)
    folder = cache_dir(export) if cache else None
    if folder is not None:
        config["CACHE_DIR"] = str(folder)
    graph = core.read_model(str(model or export.graphs[stage]))
    if static_batch is not None:
        first = graph.inputs[0]
        graph.reshape({first.get_any_name(): [static_batch] + [d.get_length() for d in
                                                                list(first.get_partial_shape())[1:]]})
    if stage == ENCODER.name and config["INFERENCE_PRECISION_HINT"] == "f32":
        routed = route_matmuls_to_onednn(graph)
        log.debug("openvino: %s: %d matrix products routed to oneDNN", stage, routed)
    return core.compile_model(graph, "CPU", config)
