"""How the encoder's attention and the graph simplifier are chosen, measured side by side in one run.

For each way of adding SAM's relative-position bias (``bias``: SAM's HW x HW float mask in every
block; ``global``: the four global blocks fold it into augmented queries and keys; ``augmented``:
every block folds it), the encoder is exported to ONNX and timed at 1024 x 1024, batch 1, in
PyTorch eager, ONNX Runtime (CPU) and OpenVINO (CPU, FP32 forced), with the number of attention
nodes ONNX Runtime's transformer optimizer fuses. Then, for one attention form, the simplifiers
(onnxslim, onnxsim, none) are compared on node count, time and ONNX Runtime latency.

    python -m benchmarks.export_report --variant vit_b --out out/export-report

Writes ``report.json`` and ``report.md`` under ``--out``. Random weights (latency does not depend
on their values); every figure is a median of ``--runs`` after one warm-up.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from s3pot.core.io_table import ENCODER, PIXELS

from . import median_seconds


def time_torch(module, pixels: np.ndarray, runs: int) -> float:
    import torch

    x = torch.from_numpy(pixels)
    with torch.inference_mode():
        return median_seconds(lambda: module(x), runs)


def time_onnxruntime(path: Path, pixels: np.ndarray, runs: int) -> float:
    from s3pot.export.onnx_export import ort_session

    session = ort_session(path)
    return median_seconds(lambda: session.run(None, {PIXELS: pixels}), runs)


def time_openvino(path: Path, pixels: np.ndarray, runs: int) -> float | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    # FP32 forced: on CPUs with AVX512_BF16 OpenVINO otherwise runs BF16 by default.
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return median_seconds(lambda: request.infer({PIXELS: pixels}), runs)


def fused_attention(path: Path, num_heads: int, hidden: int) -> dict:
    """Attention nodes ONNX Runtime's transformer optimizer fuses, per model type tried."""
    from onnxruntime.transformers.optimizer import optimize_model

    fused = {}
    for model_type in ("sam2", "vit"):
        try:
            model = optimize_model(str(path), model_type=model_type, num_heads=num_heads,
                                   hidden_size=hidden, opt_level=0)
            stats = model.get_fused_operator_statistics()
            fused[model_type] = int(sum(v for k, v in stats.items() if "Attention" in k))
        except Exception as exc:  # an optimizer that does not know the graph reports, not fails
            fused[model_type] = f"failed: {type(exc).__name__}"
    return fused


def measure_modes(variant: str, modes, out: Path, runs: int) -> list[dict]:
    from s3pot.export.onnx_export import export_stage
    from s3pot.models import STAGE_MODULES, build_s3pot, get_variant

    args = get_variant(variant).encoder_args
    model = build_s3pot(variant, random_weights=True)
    pixels = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    rows = []
    for mode in modes:
        model.image_encoder.set_attention(mode)
        stage = STAGE_MODULES[ENCODER.name](model)
        path = out / f"encoder_{mode}.onnx"
        start = time.perf_counter()
        result = export_stage(stage, ENCODER, path)
        row = {"attention": mode, "export_s": time.perf_counter() - start, "nodes": result.nodes,
               "mb": result.bytes / 1e6, "rel_l2": result.rel_l2,
               "torch_s": time_torch(stage, pixels, runs),
               "onnxruntime_s": time_onnxruntime(path, pixels, runs),
               "openvino_s": time_openvino(path, pixels, runs)}
        if "embed_dim" in args:
            row["fused_attention"] = fused_attention(path, args["num_heads"], args["embed_dim"])
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def measure_simplifiers(variant: str, mode: str, out: Path, runs: int) -> list[dict]:
    from s3pot.export.onnx_export import SIMPLIFIERS, export_stage
    from s3pot.models import STAGE_MODULES, build_s3pot

    model = build_s3pot(variant, random_weights=True)
    model.image_encoder.set_attention(mode)
    pixels = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    rows = []
    for tool in SIMPLIFIERS:
        path = out / f"encoder_{mode}_{tool}.onnx"
        result = export_stage(STAGE_MODULES[ENCODER.name](model), ENCODER, path, simplifier=tool,
                              verify=False)
        row = {"simplifier": tool, "nodes": result.nodes, "simplify_s": result.seconds["simplify"],
               "mb": result.bytes / 1e6, "onnxruntime_s": time_onnxruntime(path, pixels, runs)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _markdown(report: dict) -> str:
    lines = [f"# Encoder export report: {report['variant']} (random weights), batch 1, 1024 x 1024",
             "", f"Machine: {report['machine']}; medians of {report['runs']} runs after a warm-up.", "",
             "| attention | export | nodes | MB | PyTorch | ONNX Runtime | OpenVINO FP32 | ORT fused attention | rel. L2 vs PyTorch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["attention"]:
        ov = f"{r['openvino_s']:.2f} s" if r["openvino_s"] is not None else "-"
        lines.append(f"| {r['attention']} | {r['export_s']:.0f} s | {r['nodes']} | {r['mb']:.0f} | "
                     f"{r['torch_s']:.2f} s | {r['onnxruntime_s']:.2f} s | {ov} | "
                     f"{r.get('fused_attention', '-')} | {r['rel_l2']:.1e} |")
    if report.get("simplifiers"):
        lines += ["", f"Simplifiers on the `{report['simplifier_mode']}` encoder:", "",
                  "| simplifier | nodes | simplify time | MB | ONNX Runtime |", "| --- | --- | --- | --- | --- |"]
        for r in report["simplifiers"]:
            lines.append(f"| {r['simplifier']} | {r['nodes']} | {r['simplify_s']:.1f} s | "
                         f"{r['mb']:.0f} | {r['onnxruntime_s']:.2f} s |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_b")
    parser.add_argument("--modes", nargs="+", default=["bias", "global", "augmented"])
    parser.add_argument("--simplifier-mode", default="global",
                        help="attention form the simplifiers are compared on ('' to skip)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("out/export-report"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"variant": args.variant, "runs": args.runs,
              "machine": f"{platform.processor() or platform.machine()}, "
                         f"{len(__import__('os').sched_getaffinity(0))} cores",
              "attention": measure_modes(args.variant, args.modes, args.out, args.runs),
              "simplifier_mode": args.simplifier_mode, "simplifiers": []}
    if args.simplifier_mode:
        report["simplifiers"] = measure_simplifiers(args.variant, args.simplifier_mode, args.out,
                                                    args.runs)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    (args.out / "report.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
