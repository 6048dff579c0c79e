"""Greedy prompt selection (SPEC stage 4): the kernels beside the authors' way, in one run.

For each row count R (face tokens) at C columns (all tokens, 4096 in the runtime) it times, on
the same ``R x C`` similarity matrix:

``authors``       sort every entry of the flattened matrix, then accept free pairs in a Python
                  loop (how the authors run the matching; ``s3pot bench``'s baseline);
``reference``     :func:`s3pot.kernels.greedy_match` (stable sort of every entry, chunked scan);
``numba_match``   the Numba kernel, matching alone (no input validation);
``gemm``          the similarity GEMM alone (normalised ``R x 256`` times ``256 x C``);
``numba_fused``   the whole Numba selection: validate, normalise, GEMM, match, split (C = 4096);
``cuda_match`` / ``cuda_fused``  the same on the GPU with data already there (only with a GPU).

Timings are interleaved (one call of each method per round) and summarised by their median.
Writes ``greedy.json`` and ``greedy.png`` (matplotlib, if installed) under ``--out``; prints a
table. Run from the repository root::

    python -m benchmarks.greedy --rows 300 1500 3000 --cols 4096 --repeat 7 --out out/bench
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from s3pot.benchmarks.baseline import authors_greedy  # the baseline of `s3pot bench`

logger = logging.getLogger(__name__)

#: Ratios reported side by side: name -> (numerator method, denominator method).
RATIOS = {
    "authors / numba_match": ("authors", "numba_match"),
    "reference / numba_match": ("reference", "numba_match"),
    "numba_fused / gemm": ("numba_fused", "gemm"),
    "authors / cuda_match": ("authors", "cuda_match"),
}
DATA_KINDS = ("random", "face", "hub")


def make_tokens(rows: int, cols: int, data: str, seed: int = 0):
    """Tokens for one size: ``(z_e, z_re, face)``, ``cols x 256``, ``cols x 256``, ``cols`` bool.

    ``random``: independent Gaussian tokens. ``face``: the image is the reference plus noise with
    a tenth of the face tokens replaced (an occluder). ``hub``: every reference token leans
    towards the same few image tokens, the hard case for any candidate-list matcher.
    """
    from s3pot.core.spec import PROMPT_DIM

    rng = np.random.default_rng(seed)
    face = np.zeros(cols, dtype=bool)
    face[rng.choice(cols, size=rows, replace=False)] = True
    z_re = rng.standard_normal((cols, PROMPT_DIM)).astype(np.float32)
    if data == "random":
        z_e = rng.standard_normal((cols, PROMPT_DIM)).astype(np.float32)
    elif data == "face":
        z_e = z_re + 0.5 * rng.standard_normal((cols, PROMPT_DIM)).astype(np.float32)
        occluded = rng.choice(np.flatnonzero(face), size=rows // 10, replace=False)
        z_e[occluded] = rng.standard_normal((occluded.size, PROMPT_DIM)).astype(np.float32)
    elif data == "hub":
        hubs = rng.standard_normal((8, PROMPT_DIM)).astype(np.float32)
        z_re = hubs.sum(0) + 0.3 * z_re
        z_e = hubs[rng.integers(0, 8, cols)] + rng.standard_normal((cols, PROMPT_DIM)).astype(
            np.float32)
    else:
        raise ValueError(f"data: expected one of {DATA_KINDS}, got {data!r}")
    return z_e, z_re, face


def _cuda_available() -> bool:
    try:
        from numba import cuda
    except ImportError:
        return False
    return cuda.is_available()


def methods_for(rows: int, cols: int, data: str) -> tuple[dict[str, Callable[[], object]], dict]:
    """The timed callables for one size, and facts about the case (e.g. whether pairs agree)."""
    from s3pot.core.spec import NUM_TOKENS
    from s3pot.kernels import greedy_match
    from s3pot.kernels.numba_cpu import greedy_kernel, select_prompts_numba
    from s3pot.kernels.reference import similarity_matrix, unit_rows

    z_e, z_re, face = make_tokens(rows, cols, data)
    ref_unit, image_unit = unit_rows(z_re[face]), unit_rows(z_e)
    sim = similarity_matrix(ref_unit, image_unit)  # rows x cols
    methods = {
        "authors": lambda: authors_greedy(sim),
        "reference": lambda: greedy_match(sim),
        "numba_match": lambda: greedy_kernel(sim),
        "gemm": lambda: similarity_matrix(ref_unit, image_unit),
    }
    grid = int(round(cols ** 0.5))
    if cols == NUM_TOKENS:
        mask = face.reshape(grid, grid)
        methods["numba_fused"] = lambda: select_prompts_numba(z_e, z_re, mask)
    if _cuda_available():
        methods.update(_cuda_methods(sim, z_e, z_re, face, grid, cols == NUM_TOKENS))
    reference = greedy_match(sim)
    facts = {"numba_equals_reference": bool(np.array_equal(greedy_kernel(sim), reference)),
             "authors_equals_reference": bool(np.array_equal(authors_greedy(sim), reference))}
    return methods, facts


def _cuda_methods(sim, z_e, z_re, face, grid, full_grid):
    from numba import cuda

    from s3pot.kernels.cuda import greedy_match_cuda, select_prompts_cuda

    device_sim, device_e, device_re = cuda.to_device(sim), cuda.to_device(z_e), cuda.to_device(z_re)

    def synced(fn):
        def run():
            result = fn()
            cuda.synchronize()
            return result
        return run

    methods = {"cuda_match": synced(lambda: greedy_match_cuda(device_sim))}
    if full_grid:
        mask = face.reshape(grid, grid)
        methods["cuda_fused"] = synced(lambda: select_prompts_cuda(device_e, device_re, mask))
    return methods


def time_interleaved(methods: dict[str, Callable[[], object]], repeat: int) -> dict[str, list]:
    """Milliseconds per call, ``repeat`` rounds of one call each, after one warm-up call each."""
    for fn in methods.values():
        fn()
    times = {name: [] for name in methods}
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def ratios(medians: dict[str, float]) -> dict[str, float]:
    return {label: medians[a] / medians[b] for label, (a, b) in RATIOS.items()
            if a in medians and b in medians}


def environment() -> dict:
    import numba

    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "cuda": _cuda_available()}


def run(rows_list, cols: int, repeat: int, data: str) -> dict:
    """Benchmark every row count; returns the JSON-ready report."""
    results = []
    for rows in rows_list:
        logger.info("R=%d, C=%d: building inputs and compiling", rows, cols)
        methods, facts = methods_for(rows, cols, data)
        logger.info("R=%d, C=%d: timing %s x %d", rows, cols, ", ".join(methods), repeat)
        times = time_interleaved(methods, repeat)
        medians = {name: statistics.median(values) for name, values in times.items()}
        results.append({"rows": rows, "cols": cols, "median_ms": medians, "times_ms": times,
                        "ratios": ratios(medians), **facts})
    return {"benchmark": "greedy", "data": data, "repeat": repeat, "environment": environment(),
            "results": results}


def table(report: dict) -> str:
    """The report as a plain-text table: medians in ms, then the ratios."""
    methods = sorted({m for r in report["results"] for m in r["median_ms"]},
                     key=lambda m: ["authors", "reference", "numba_match", "gemm", "numba_fused",
                                    "cuda_match", "cuda_fused"].index(m))
    labels = [label for label in RATIOS if any(label in r["ratios"] for r in report["results"])]
    header = f"{'R x C':>12}" + "".join(f"{m:>13}" for m in methods) + "".join(
        f"{label:>26}" for label in labels)
    lines = [f"median ms over {report['repeat']} runs ({report['data']} data)", header]
    for r in report["results"]:
        cells = "".join(f"{r['median_ms'].get(m, float('nan')):>13.2f}" for m in methods)
        cells += "".join(f"{r['ratios'].get(label, float('nan')):>25.1f}x" for label in labels)
        lines.append(f"{r['rows']:>5} x {r['cols']:<5}" + cells)
    return "\n".join(lines)


def chart(report: dict, path: Path) -> bool:
    """A grouped bar chart of the medians (log scale) into ``path``; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("no chart: matplotlib is not installed (pip install 's3pot-rt[bench]')")
        return False
    results = report["results"]
    methods = list(results[0]["median_ms"])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(results), 4.5))
    for i, method in enumerate(methods):
        xs = [j + i * width for j in range(len(results))]
        ax.bar(xs, [r["median_ms"].get(method, np.nan) for r in results], width, label=method)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(results))])
    ax.set_xticklabels([f"R={r['rows']}\nC={r['cols']}" for r in results])
    ax.set_yscale("log")
    ax.set_ylabel("median time per call (ms, log scale)")
    ax.set_title(f"Greedy prompt selection ({report['data']} data)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.greedy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[300, 1500, 3000],
                        help="face-token counts R (rows of S)")
    parser.add_argument("--cols", type=int, default=4096, help="token count C (columns of S)")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per method")
    parser.add_argument("--data", choices=DATA_KINDS, default="random",
                        help="token distribution (see make_tokens)")
    parser.add_argument("--out", type=Path, default=Path("out/bench-greedy"),
                        help="folder for greedy.json and greedy.png")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    bad = [rows for rows in args.rows if not 1 <= rows <= args.cols]
    if bad:
        print(f"--rows: expected values in 1..{args.cols} (at most --cols), got {bad}",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # (numba-cuda logs at INFO)
    logger.setLevel(logging.INFO)
    report = run(args.rows, args.cols, args.repeat, args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "greedy.json").write_text(json.dumps(report, indent=2))
    chart(report, args.out / "greedy.png")
    print(table(report))
    print(f"wrote {args.out / 'greedy.json'}")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # run by path: make the repository root importable
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
