"""The floor under every stage: its FLOP count over the measured matrix-multiply rate of the
library that runs it, on the same machine, in the same run.

FLOPs are counted by PyTorch's ``FlopCounterMode`` on the stage modules built on the ``meta``
device (no weights, no arithmetic: it takes a second even for ViT-H); they count matrix products,
convolutions and attention (2 FLOPs per multiply-add), the work a GEMM library does. Elementwise
work (norms, softmax, GELU) is left out, so a stage at its floor runs its products at the
library's GEMM rate and spends nothing on the rest.

The rate is that of one GEMM of ViT-B's MLP shape (``4096 x 768`` times ``768 x 3072``, the
encoder's most common product), timed in each library at each precision it is asked for (its
quickest of 20 calls), by each path's own process right after its runs (a shared machine's busy
and quiet moments then move a path and its floor together).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from s3pot.core.io_table import ENCODER, STAGES

from . import call_seconds

#: The GEMM whose rate is the floor: M x K times K x N.
GEMM_SHAPE = (4096, 768, 3072)
GEMM_FLOPS = 2 * GEMM_SHAPE[0] * GEMM_SHAPE[1] * GEMM_SHAPE[2]


def stage_flops(variant: str, num_points: int) -> tuple[dict[str, float], float]:
    """FLOPs of each exported stage for one sample: the encoder per image, FE on the pair, SA and
    the decoder with ``num_points`` prompts (the run's own count); and the encoder's attention
    FLOPs (its batched products), which the INT8 encoder leaves in floating point."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from s3pot.export.onnx_export import sample_feeds
    from s3pot.models import STAGE_MODULES, build_s3pot

    with torch.device("meta"):
        model = build_s3pot(variant, random_weights=True).eval()
    points = max(1, num_points)
    sizes = {"batch": 1, "pair": 2, "num_points": points, "num_points_plus_1": points + 1}
    flops = {}
    for stage in STAGES:
        feeds = sample_feeds(stage, "opt", sizes=sizes)
        args = [torch.from_numpy(np.ascontiguousarray(v)).to("meta") for v in feeds.values()]
        with FlopCounterMode(display=False) as counter:  # (no_grad trips its module hooks)
            STAGE_MODULES[stage](model)(*args)
        flops[stage] = float(counter.get_total_flops())
        if stage == ENCODER.name:  # the encoder's batched products: attention and its bias terms
            ops = counter.get_flop_counts().get("Global", {})
            attention = float(sum(v for op, v in ops.items() if "bmm" in str(op)))
    return flops, attention


def _peak_rate(fn, repeat: int = 20) -> float:
    """GFLOP/s of ``fn`` (one GEMM) in its quickest of ``repeat`` calls after two warm-up calls:
    the floor is what the library can do, and on a shared machine a median of a few calls of a
    20 ms product can land on a busy moment (one BF16 rate came out at half its usual value)."""
    return GEMM_FLOPS / min(call_seconds(fn, repeat, warmup=2)) / 1e9


def _operands(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m, k, n = GEMM_SHAPE
    return rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)


def torch_rate(precision: str, device: str = "cpu", threads: int = 0) -> float:
    import torch

    if threads:
        torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    a, b = (torch.from_numpy(x).to(device=device, dtype=dtype) for x in _operands())

    def gemm():
        a @ b
        if a.is_cuda:
            torch.cuda.synchronize(a.device)

    return _peak_rate(gemm)


def _matmul_graph(folder: Path) -> Path:
    """An ONNX graph of one MatMul with the right operand as a weight (as in the encoder)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = GEMM_SHAPE
    _, b = _operands()
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        initializer=[numpy_helper.from_array(b, "b")])
    path = folder / "gemm.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))  # (IR 8 = opset 17: what every ONNX Runtime reads)
    return path


def onnxruntime_rate(device: str = "cpu", threads: int = 0) -> float:
    import onnxruntime as ort

    from s3pot.runtime.backends.onnxruntime import resolve_providers, session_options

    a, _ = _operands()
    with tempfile.TemporaryDirectory() as folder:
        session = ort.InferenceSession(str(_matmul_graph(Path(folder))), session_options(threads),
                                       providers=resolve_providers(device))
    return _peak_rate(lambda: session.run(None, {"a": a}))


def openvino_rate(precision: str, threads: int = 0) -> float:
    import openvino as ov

    from s3pot.runtime.backends.openvino.loader import compile_config

    a, _ = _operands()
    with tempfile.TemporaryDirectory() as folder:
        compiled = ov.Core().compile_model(str(_matmul_graph(Path(folder))), "CPU",
                                           compile_config(precision, threads))
    request = compiled.create_infer_request()
    return _peak_rate(lambda: request.infer({0: a}))


def openvino_int8_rate(threads: int = 0) -> float:
    """OpenVINO's INT8 GEMM: the same product with FakeQuantize on the activation (asymmetric,
    256 levels, per tensor) and the weight (symmetric, 255 levels, per output channel), the
    pattern NNCF writes and OpenVINO's low-precision transformations run as an INT8 product."""
    import openvino as ov
    import openvino.opset13 as ops

    from s3pot.runtime.backends.openvino.loader import compile_config

    a, b = _operands()
    low, high = float(a.min()), float(a.max())
    limit = np.abs(b).max(axis=0, keepdims=True)  # 1 x n: per output channel
    x = ops.parameter(list(a.shape), ov.Type.f32, name="a")
    fq_a = ops.fake_quantize(x, low, high, low, high, 256)
    fq_b = ops.fake_quantize(ops.constant(b), -limit, limit, -limit, limit, 255)
    model = ov.Model([ops.matmul(fq_a, fq_b, False, False)], [x], "gemm_int8")
    compiled = ov.Core().compile_model(model, "CPU", compile_config("int8", threads))
    request = compiled.create_infer_request()
    return _peak_rate(lambda: request.infer({0: a}))


def float_rate(library: str, precision: str, device: str, threads: int = 0) -> tuple[float, str] | None:
    """For the INT8 path, the rate of what it leaves in floating point (OpenVINO's BF16, or FP32
    without BF16); None for every other path."""
    if library != "openvino" or precision != "int8":
        return None
    from s3pot.runtime.backends.openvino.loader import cpu_precisions

    floats = "bf16" if "bf16" in cpu_precisions() else "fp32"
    return openvino_rate(floats, threads), f"openvino MatMul {floats} on cpu"


def gemm_rate(library: str, precision: str, device: str, threads: int = 0) -> tuple[float, str]:
    """``(GFLOP/s, what was measured)`` of the library that runs a path. TensorRT cannot be timed
    without building an engine; its floor uses cuBLAS's rate through PyTorch (same GPU)."""
    if library in ("torch", "authors"):
        return torch_rate(precision, device, threads), f"torch.matmul {precision} on {device}"
    if library == "onnxruntime":
        if precision != "fp32":
            return torch_rate(precision, device, threads), f"torch.matmul {precision} (proxy)"
        return onnxruntime_rate(device, threads), f"onnxruntime MatMul fp32 on {device}"
    if library == "openvino" and precision == "int8":
        return openvino_int8_rate(threads), "openvino MatMul int8 (FakeQuantize inputs) on cpu"
    if library == "openvino":
        return openvino_rate(precision, threads), f"openvino MatMul {precision} on cpu"
    return torch_rate(precision, device, threads), f"torch.matmul {precision} on {device} (proxy)"
