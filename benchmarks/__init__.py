"""Benchmarks of s3pot-rt: ``s3pot bench`` (:mod:`.bench`), ``s3pot evaluate`` (:mod:`.evaluate`),
and the scripts run as ``python -m benchmarks.<name>`` from the repository root (``greedy``,
``export_report``)."""
from __future__ import annotations

import statistics
import time


def call_seconds(fn, repeat: int, warmup: int = 1) -> list[float]:
    """The wall time of each of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls
    (first-run allocations, OpenVINO / ONNX Runtime first-run work)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn, repeat: int, warmup: int = 1) -> float:
    """The median of :func:`call_seconds`."""
    return statistics.median(call_seconds(fn, repeat, warmup))
