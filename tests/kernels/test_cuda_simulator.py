"""Runs ``cuda_simulated_cases.py`` under Numba's CUDA simulator in a subprocess.

The simulator has to be switched on before ``numba.cuda`` is first imported, and must not leak
into the rest of the suite, hence the separate interpreter.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("cuda_simulated_cases.py")
ROOT = Path(__file__).resolve().parents[2]


def test_cuda_kernels_under_the_simulator():
    pytest.importorskip("numba")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]
