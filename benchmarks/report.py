"""What ``s3pot bench`` writes: the terminal tables, ``bench.json`` (every figure), ``bench.md``
(the same tables for a README or a pull request), ``bench.png`` (the stage breakdown per path)
and the change against an earlier run's JSON (``--compare``)."""
from __future__ import annotations

import json
from pathlib import Path

from s3pot.core.atomic import write_bytes_atomic
from s3pot.core.io_table import STAGES

from .baseline import STAGE_KEYS

STAGE_LABELS = {"preprocess": "preprocess", "encoder": "encoder", "initial_prompt": "initial prompt",
                "fe": "FE", "prompt_selection": "prompt selection", "sa": "SA", "decoder": "decoder",
                "postprocess": "postprocess"}


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def header_lines(report: dict) -> list[str]:
    env = report["environment"]
    gpu = env.get("gpu") or {}
    machine = f"{env['cpu']} ({env['cores']} cores; {', '.join(env['cpu_flags']) or 'no AVX flags'})"
    if gpu.get("name"):
        machine += f", GPU {gpu['name']}"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    return [f"S3POT latency at {report['image_size']}x{report['image_size']}, one face: "
            f"{report['variant']}, {report['weights']['label']}.",
            f"Machine: {machine}. {versions}.",
            f"Each path in its own process: {report['warmup']} warm-up, {report['runs']} timed "
            f"samples ({report.get('order', 'sequential: one path after another')}), "
            f"{report['video_runs']} video frames (reference embedding cached); "
            f"ratios are the baseline's median over the path's.",
            f"Memory allocator: {_allocator_text(report)}."]


def _malloc(report: dict) -> dict:
    """The run's allocator setting (runs before it was recorded used the system's)."""
    return report.get("malloc") or {"mode": "system", "label": "the C library's defaults"}


def _allocator_text(report: dict) -> str:
    """The ``--malloc`` setting, and any allocator setting the user's environment added."""
    malloc = _malloc(report)
    ran = next((p.get("allocator_env") for p in report["paths"] if p.get("allocator_env")), {})
    extra = {k: v for k, v in ran.items() if malloc.get("env", {}).get(k) != v}
    text = malloc["label"]
    if extra:
        text += "; the environment also set " + ", ".join(f"{k}={v}" for k, v in extra.items())
    return text


def _count(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,.0f}"


def summary_table(report: dict) -> list[str]:
    header = ["path", "runner", "median", "p90", "p99", "vs baseline", "video frame",
              "video vs baseline", "encoder / image", "encoder vs floor", "peak host memory",
              "page faults / sample", "prompts = baseline", "mask IoU vs baseline"]
    rows = []
    for p in report["paths"]:
        if p["status"] != "ok":
            rows.append([p["name"], f"failed: {p['error'][:80]}"] + ["-"] * (len(header) - 2))
            continue
        acc = p["accuracy"]
        floor = p.get("floor", {}).get("encoder", {})
        prompts = ("yes" if acc["prompts_equal"] else f"no ({acc['prompt_agreement'] * 100:.1f}% "
                   "of face tokens)")
        memory = f"{p['peak_host_bytes'] / 1e9:.2f} GB"
        if p.get("device_memory_bytes"):
            memory += f" (+{p['device_memory_bytes'] / 1e9:.2f} GB GPU)"
        video = p.get("video_total", {}).get("median")
        rows.append([p["name"], p["runner"].split(":")[0], _s(p["total"]["median"]),
                     _s(p["total"]["p90"]), _s(p["total"]["p99"]), _x(p.get("speedup")),
                     _s(video), _x(p.get("video_speedup")), _s(p.get("encoder_per_image_s")),
                     _x(floor.get("ratio")), memory, _count(p.get("page_faults_median")), prompts,
                     f"{acc['mask_iou']:.4f}"])
    return _table(header, rows)


def stage_table(report: dict) -> list[str]:
    header = ["path"] + [STAGE_LABELS[k] for k in STAGE_KEYS] + ["end to end"]
    rows = []
    for p in report["paths"]:
        if p["status"] == "ok":
            rows.append([p["name"]] + [_s(p["stages"][k]["median"]) for k in STAGE_KEYS]
                        + [_s(p["total"]["median"])])
    return _table(header, rows)


def device_table(report: dict) -> list[str]:
    """CUDA-event device time per stage, where a path measured it (PyTorch on a GPU)."""
    paths = [p for p in report["paths"] if p.get("status") == "ok" and p.get("device_stage_ms")]
    if not paths:
        return []
    stages = list(dict.fromkeys(k for p in paths for k in p["device_stage_ms"]))
    rows = [[p["name"]] + [_s(p["device_stage_ms"][k] / 1e3) if k in p["device_stage_ms"] else "-"
                           for k in stages] for p in paths]
    return _table(["path"] + [f"{STAGE_LABELS.get(k, k)} (device)" for k in stages], rows)


def accuracy_table(report: dict) -> list[str]:
    header = ["path"] + [f"{s} rel. error" for s in STAGES] + ["logits rel. error",
                                                               "prompt agreement", "mask IoU"]
    rows = []
    for p in report["paths"][1:]:
        if p["status"] != "ok":
            continue
        acc = p["accuracy"]
        errors = [acc["stage_rel_error"].get(s) for s in STAGES]
        rows.append([p["name"]] + ["-" if e is None else f"{e:.1e}" for e in errors]
                    + [f"{acc['logits_rel_error']:.1e}", f"{acc['prompt_agreement'] * 100:.2f}%",
                       f"{acc['mask_iou']:.4f}"])
    return _table(header, rows)


def floor_table(report: dict) -> list[str]:
    floor = report.get("floor")
    if not floor:
        return []
    flops = floor["flops"]
    lines = [f"FLOPs per sample: encoder {flops['encoder'] / 1e9:.1f} G per image, FE "
             f"{flops['fe'] / 1e9:.2f} G (the pair), SA {flops['sa'] / 1e9:.2f} G and decoder "
             f"{flops['decoder'] / 1e9:.2f} G at {floor['prompts']} prompts. GEMM "
             f"{floor['gemm']['m']}x{floor['gemm']['k']} by {floor['gemm']['k']}x{floor['gemm']['n']}:"]
    lines += [f"- {name}: {rate['gflops']:.0f} GFLOP/s ({rate['measured']}, measured by the "
              "path's process after its runs)"
              + (f"; its encoder's attention ({floor.get('encoder_attention_flops', 0) / 1e9:.0f} G "
                 f"per image) stays in floating point: {rate['float_gflops']:.0f} GFLOP/s "
                 f"({rate['float_measured']})" if "float_gflops" in rate else "")
              for name, rate in floor["rates"].items()]
    header = ["path", "encoder / image", "floor", "ratio", "FE", "FE floor", "decoder", "decoder floor"]
    rows = []
    for p in report["paths"]:
        if p["status"] != "ok" or "floor" not in p:
            continue
        f = p["floor"]
        rows.append([p["name"], _s(p["encoder_per_image_s"]), _s(f["encoder"]["seconds"]),
                     _x(f["encoder"]["ratio"]), _s(p["stages"]["fe"]["median"]), _s(f["fe"]["seconds"]),
                     _s(p["stages"]["decoder"]["median"]), _s(f["decoder"]["seconds"])])
    return lines + [""] + _table(header, rows)


#: Page faults per sample from which the baseline's are worth a sentence (about 0.4 GB of fresh
#: 4 KB pages; ViT-B's baseline takes millions under glibc's defaults).
FAULTS_WORTH_SAYING = 100_000


def headline_lines(report: dict) -> list[str]:
    head, lines = report["headline"], []
    if "fastest_fp32" in head:
        h = head["fastest_fp32"]
        floor = f"; its encoder at {h['encoder_floor_ratio']:.2f}x its floor" if "encoder_floor_ratio" in h else ""
        lines.append(f"Fastest FP32 path: {h['name']}, {h['speedup']:.2f}x the baseline{floor}.")
    if "fastest_reduced" in head:
        h = head["fastest_reduced"]
        lines.append(f"Fastest reduced-precision path: {h['name']}, {h['speedup']:.2f}x the "
                     f"baseline, mask IoU {h['mask_iou']:.4f} against the baseline's FP32 mask, "
                     f"same prompt on {h['prompt_agreement'] * 100:.1f}% of face tokens.")
    base = report["paths"][0]
    if base.get("own_encoder_s"):
        lines.append(f"The baseline's image encoder ({base['encoder_source']}) took "
                     f"{base['encoder_per_image_s']:.2f} s per image; this repository's PyTorch "
                     f"module of the same encoder took {base['own_encoder_s']:.2f} s in one call "
                     "on the same image in the same process.")
    faults = base.get("page_faults_median")
    if faults is not None and faults >= FAULTS_WORTH_SAYING and _malloc(report)["mode"] == "system":
        lines.append(f"The baseline took {_count(faults)} page faults per sample: the allocator "
                     "returns PyTorch's freed activations to the kernel and maps fresh pages for "
                     "the next; `--malloc keep` measures every path with freed memory kept.")
    d = head["dominant"]
    lines.append(f"What is left: on {d['path']}, the {STAGE_LABELS[d['stage']]} takes "
                 f"{d['share'] * 100:.0f}% of a sample.")
    checks = report["checks"]
    bad = [name for name, same in checks["fp32_prompts_equal_baseline"].items() if not same]
    if bad:
        lines.append(f"CHECK FAILED: FP32 prompts differ from the baseline's on {', '.join(bad)}.")
    bad = [name for name, ok in checks["fp32_stage_error_ok"].items() if not ok]
    if bad:
        lines.append(f"CHECK FAILED: an FP32 stage is off PyTorch's by more than relative L2 "
                     f"{checks['fp32_stage_error_within']:.0e} on {', '.join(bad)}.")
    return lines


def markdown(report: dict) -> str:
    parts = [*header_lines(report), "", *headline_lines(report), "", "End to end:", "",
             *summary_table(report), "", "Stage medians:", "", *stage_table(report), "",
             *(["Device time per stage (CUDA events, medians):", "", *device_table(report), ""]
               if device_table(report) else []),
             "Accuracy against the baseline (PyTorch FP32; each stage on the baseline's inputs):",
             "", *accuracy_table(report)]
    floor = floor_table(report)
    if floor:
        parts += ["", "The floor (FLOPs over the library's measured GEMM rate):", "", *floor]
    return "\n".join(parts) + "\n"


def write_json(report: dict, path: Path) -> None:
    write_bytes_atomic(path, json.dumps(report, indent=1).encode())


def write_chart(report: dict, path: Path) -> bool:
    """A horizontal stacked bar per path: its stage medians. False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [p for p in report["paths"] if p["status"] == "ok"][::-1]
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.55 * len(paths)))
    left = [0.0] * len(paths)
    colors = plt.get_cmap("tab10")
    for index, stage in enumerate(STAGE_KEYS):
        widths = [p["stages"][stage]["median"] for p in paths]
        ax.barh([p["name"] for p in paths], widths, left=left, color=colors(index),
                label=STAGE_LABELS[stage])
        left = [a + b for a, b in zip(left, widths)]
    for y, p in enumerate(paths):
        ax.text(left[y], y, f"  {p['total']['median']:.2f} s ({p['speedup']:.1f}x)", va="center",
                fontsize=8)
    ax.set_xlabel("median seconds per sample (1024 x 1024, one face)")
    ax.set_title(f"S3POT {report['variant']}: stage breakdown per path "
                 f"({report['weights']['kind']} weights, {report['environment']['cores']} cores)")
    ax.set_xlim(0, max(left) * 1.25)
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def compare(report: dict, old: dict) -> list[str]:
    """The change of every path and stage present in both runs (new / old median)."""
    before = {p["name"]: p for p in old.get("paths", []) if p.get("status") == "ok"}
    lines = [f"Against {old.get('created', 'an earlier run')} ({old.get('variant')}, "
             f"{old.get('environment', {}).get('cpu', '?')}); ratio = new / old median:"]
    header = ["path", "end to end"] + [STAGE_LABELS[k] for k in STAGE_KEYS]
    rows = []
    for p in report["paths"]:
        if p["status"] != "ok" or p["name"] not in before:
            continue
        q = before[p["name"]]

        def change(new: float, was: float) -> str:
            return f"{_s(was)} -> {_s(new)} ({new / was:.2f}x)" if was > 0 else _s(new)

        rows.append([p["name"], change(p["total"]["median"], q["total"]["median"])]
                    + [change(p["stages"][k]["median"], q["stages"].get(k, {}).get("median", 0.0))
                       for k in STAGE_KEYS])
    missing = sorted(set(before) - {p["name"] for p in report["paths"]})
    if _malloc(report)["mode"] != _malloc(old)["mode"]:
        lines.append(f"The runs differ in their allocator: --malloc {_malloc(old)['mode']} before, "
                     f"{_malloc(report)['mode']} now; PyTorch paths move with it.")
    lines += _table(header, rows)
    if missing:
        lines.append(f"Only in the earlier run: {', '.join(missing)}.")
    return lines


def load_report(path: Path) -> dict:
    """An earlier ``bench.json``; a file that is not one gets one clear error."""
    from s3pot.core.errors import S3potInputError

    try:
        report = json.loads(Path(path).read_text())
    except OSError as exc:
        raise S3potInputError(f"--compare '{path}': could not read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise S3potInputError(f"--compare '{path}': expected a bench.json, got invalid JSON ({exc})") from None
    if not isinstance(report, dict) or report.get("benchmark") != "s3pot bench":
        raise S3potInputError(f"--compare '{path}': expected the JSON of `s3pot bench`, got another file")
    return report
