"""Runs ``cuda_simulated_cases.py`` under Numba's CUDA simulator in a subprocess.

The simulator has to be switched on before ``numba.cuda`` is first imported, and must not leak
into the rest of the suite, hence the separate interpreter.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_under_cuda_simulator

CASES = Path(__file__).with_name("cuda_simulated_cases.py")


def test_cuda_kernels_under_the_simulator():
    pytest.importorskip("numba")
    run_under_cuda_simulator(CASES)
