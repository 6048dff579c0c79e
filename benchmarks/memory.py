"""Peak host memory of the pipeline end to end, each backend in a fresh process.

Every run is its own Python process that builds the pipeline (sessions, optimisation, weights)
and segments the test photo ``--repeat`` times; the figure is that process's peak resident set
(``ru_maxrss`` of the finished child), so nothing the parent or an earlier run allocated counts.
Backends run one after the other, never side by side.

    python -m benchmarks.memory --variant vit_b --out out/memory

An export folder is made with ``s3pot export --random-weights`` under ``--out`` when ``--model``
is not given (random weights: memory and latency do not depend on their values). Writes
``memory.json`` and ``memory.md`` under ``--out``; prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SAMPLE = [str(DATA / "obama_face.jpg"), str(DATA / "obama_face_ref.jpg"),
          str(DATA / "obama_face_parsing_mask.npy")]

#: The child: build one pipeline, segment ``repeat`` times, print timings as JSON.
CHILD = r"""
import json, sys, time
from s3pot.runtime.backends import ModelSpec, create_runner
from s3pot.runtime.pipeline import Pipeline
backend, folder, variant, precision, repeat, sample = sys.argv[1:7]
spec = (ModelSpec(folder=folder, precision=precision, device="cpu") if backend != "torch" else
        ModelSpec(variant=variant, random_weights=True, precision=precision, device="cpu"))
start = time.perf_counter()
pipeline = Pipeline(create_runner(backend, spec), reference_cache=0)
build = time.perf_counter() - start
times = []
for _ in range(int(repeat)):
    start = time.perf_counter()
    seg = pipeline.segment(*sample.split(","))
    times.append(time.perf_counter() - start)
print(json.dumps({"build_s": build, "segment_s": times, "runner": pipeline.runner.describe()}))
"""


def run_child(backend: str, folder: Path | None, variant: str, precision: str, repeat: int) -> dict:
    """One fresh process; its own peak RSS, from ``wait4`` (this child's rusage alone)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, backend, str(folder), variant,
                                 precision, str(repeat), ",".join(SAMPLE)], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # Linux reports kilobytes
    return result


def ensure_export(variant: str, out: Path, model: Path | None) -> Path:
    if model is not None:
        return model
    folder = out / f"export-{variant}"
    if not (folder / "manifest.json").is_file():
        print(f"exporting {variant} (random weights) to {folder} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "s3pot.runtime.cli", "export", "--variant", variant,
                        "--random-weights", "--out", str(folder), "--overwrite"], check=True)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_b")
    parser.add_argument("--model", type=Path, help="an export folder (default: export one)")
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"])
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("out/memory"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = ensure_export(args.variant, args.out, args.model)
    results = {}
    for backend in args.backends:
        print(f"{backend}: running in a fresh process ...", file=sys.stderr, flush=True)
        results[backend] = run_child(backend, folder, args.variant, args.precision, args.repeat)
    lines = ["| backend | peak host memory | pipeline build | first segment | next segment |",
             "| --- | --- | --- | --- | --- |"]
    for backend, r in results.items():
        times = r["segment_s"]
        lines.append(f"| {r['runner']} | {r['peak_rss_gb']:.2f} GB | {r['build_s']:.1f} s | "
                     f"{times[0]:.2f} s | {min(times[1:] or times):.2f} s |")
    report = {"variant": args.variant, "precision": args.precision, "cpu_count": os.cpu_count(),
              "created": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}
    (args.out / "memory.json").write_text(json.dumps(report, indent=1))
    (args.out / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
