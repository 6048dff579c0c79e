"""Latency at 1024x1024, stage by stage, for every backend and precision this machine has, beside
the authors' way of running S3POT (PyTorch eager FP32 on the official segment-anything modules,
separate encoder calls, a Python greedy scan) in the same run.

Each path runs in its own process: build, warm-up, timed samples (median, p90, p99), the video
case (reference embedding cached) and its peak host memory; one path after another, each alone
on the machine (--interleave: one timed sample of every path per round, all processes alive). Every path's prompts, mask and
per-stage outputs are compared with the baseline's; every encoder figure has its distance to the
floor (FLOPs over the library's measured GEMM rate) beside it. Reduced precision (OpenVINO BF16
on CPUs with AVX512-BF16; OpenVINO INT8 on CPUs with VNNI, the encoder quantized first by
`s3pot quantize`'s code; FP16 on a GPU) is measured as its own path, never chosen silently.
PyTorch on the CPU (FP32, BF16) runs when --backends names torch. Random weights unless
--checkpoint is given (latency does not depend on their values).

Writes OUT/bench.json (every figure), OUT/bench.md and OUT/bench.png; prints the tables.

  s3pot bench                                   # ViT-B, every path (about 8 minutes on 2 cores)
  s3pot bench --backends torch                  # PyTorch on the CPU, left out by default
  s3pot bench --variant tiny --runs 3 --json bench.json
  s3pot bench --backends onnxruntime openvino --precisions bf16 --compare out/bench/old.json
"""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from s3pot.runtime.cli.common import variant_names

    parser.add_argument("--variant", default="vit_b", choices=variant_names(), metavar="VARIANT",
                        help="SAM backbone: " + ", ".join(variant_names()) + " (default: vit_b; "
                             "tiny for a quick check, mobile_sam for edge)")
    parser.add_argument("--checkpoint", type=Path, help="official checkpoint (default: seeded "
                        "random weights)")
    parser.add_argument("--adapter", type=Path, help="trained S3POT adapter (with --checkpoint)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    parser.add_argument("--model", type=Path, metavar="DIR", help="export folder to run (default: "
                        "export one under --out, once)")
    parser.add_argument("--backends", nargs="+", metavar="NAME",
                        help="only these backends (torch, onnxruntime, openvino, tensorrt); the "
                             "baseline always runs")
    parser.add_argument("--precisions", nargs="+", metavar="P", help="only these precisions "
                        "(fp32, fp16, bf16)")
    parser.add_argument("--runs", type=int, default=2, help="timed samples per path (default: 2; "
                        "ViT-B takes 7 to 25 s a sample on 2 cores)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed samples first (default: 1)")
    parser.add_argument("--video-runs", type=int, help="timed video frames per path (default: --runs)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0 = all cores)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu"],
                        help="auto: the GPU paths where an NVIDIA GPU is present; cpu: CPU paths only")
    parser.add_argument("--interleave", action="store_true",
                        help="build every path's process first, then run one timed sample of "
                             "each per round, so that a drift of the machine's speed falls on "
                             "all alike; all processes stay in memory together, which slowed the "
                             "PyTorch baseline by 15 to 50%% on a 24 GB VM (see README)")
    parser.add_argument("--malloc", default="system", choices=["system", "keep"],
                        help="the allocator of every path's process: system (default: as users "
                             "run the authors' code) or keep (glibc keeps freed memory, so that "
                             "PyTorch eager stops page-faulting its activations in; see README)")
    parser.add_argument("--no-floor", action="store_true", help="skip the FLOP floor")
    parser.add_argument("--out", type=Path, default=Path("out/bench"),
                        help="folder for bench.json, bench.md, bench.png and the export (default: out/bench)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON here")
    parser.add_argument("--compare", type=Path, metavar="OLD_JSON",
                        help="print the change against an earlier run's bench.json")


def run(args) -> int:
    from s3pot.core.errors import require

    require("torch", "'s3pot-rt[torch]' (the baseline and the export need PyTorch)")
    from s3pot.runtime.cli.common import say as say_for

    from .bench import BenchOptions, run_bench
    from .report import (compare, header_lines, headline_lines, load_report, markdown,
                         stage_table, summary_table, write_chart, write_json)

    old = load_report(args.compare) if args.compare else None  # a bad file fails before the run

    say = say_for("bench")

    options = BenchOptions(
        variant=args.variant, checkpoint=args.checkpoint, adapter=args.adapter, seed=args.seed,
        model=args.model, backends=tuple(args.backends or ()), precisions=tuple(args.precisions or ()),
        runs=args.runs, warmup=args.warmup, video_runs=args.video_runs, threads=args.threads,
        out=args.out, floor=not args.no_floor, device=args.device, interleave=args.interleave,
        malloc=args.malloc)
    report = run_bench(options, say)
    write_json(report, args.out / "bench.json")
    if args.json:
        write_json(report, args.json)
    (args.out / "bench.md").write_text(markdown(report))
    chart = write_chart(report, args.out / "bench.png")
    print("\n".join([*header_lines(report), "", *summary_table(report), "", *stage_table(report),
                     "", *headline_lines(report)]))
    if old is not None:
        print("\n" + "\n".join(compare(report, old)))
    written = ["bench.json", "bench.md"] + (["bench.png"] if chart else [])
    say(f"wrote {', '.join(str(args.out / n) for n in written)}"
        + ("" if chart else " (no chart: pip install matplotlib)")
        + f" in {report['seconds'] / 60:.1f} min")
    failed = [p["name"] for p in report["paths"] if p["status"] != "ok"]
    if failed:
        say(f"paths that failed: {', '.join(failed)} (see the table)")
    checks = report["checks"]
    if not all(checks["fp32_prompts_equal_baseline"].values()):
        say("error: an FP32 path's prompts differ from the baseline's (see the table)")
        return 1
    if not all(checks["fp32_stage_error_ok"].values()):
        say(f"error: an FP32 path's stage differs from PyTorch's by more than relative L2 "
            f"{checks['fp32_stage_error_within']:.0e} (see bench.md)")
        return 1
    return 0
