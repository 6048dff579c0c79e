"""A tiny run of ``benchmarks/greedy.py``, and its authors'-way baseline checked against SPEC.

Timings are never asserted: only that the benchmark runs and reports what it promises.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from greedy_cases import similarity_case
from s3pot.kernels import greedy_match

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "greedy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_greedy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_authors_baseline_gives_the_spec_matching_on_continuous_data(bench):
    sim = similarity_case("normal", 40, 90, seed=4)
    np.testing.assert_array_equal(bench.authors_greedy(sim), greedy_match(sim))


@pytest.mark.parametrize("data", ["random", "face", "hub"])
def test_token_kinds_have_the_requested_sizes(bench, data):
    z_e, z_re, face = bench.make_tokens(10, 64, data)
    assert z_e.shape == z_re.shape == (64, 256) and face.sum() == 10


def test_benchmark_smoke_run_writes_json_and_chart(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.greedy", "--rows", "8", "--cols", "64", "--repeat", "1",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "greedy.json").read_text())
    (result,) = report["results"]
    assert {"authors", "reference", "numba_match", "gemm"} <= set(result["median_ms"])
    assert result["numba_equals_reference"] and "authors / numba_match" in result["ratios"]
    assert "authors / numba_match" in proc.stdout  # the printed table
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "greedy.png").stat().st_size > 0


def test_benchmark_rejects_more_rows_than_columns():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--rows", "100", "--cols", "64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "at most --cols" in proc.stderr
