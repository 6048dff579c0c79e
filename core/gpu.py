"""Which NVIDIA GPU this machine has: its name and compute capability (engine builds, sidecar
checks, `s3pot doctor`, `--backend auto`).

Asked of cuda-python's runtime bindings first (``cuda.bindings.runtime``, or ``cuda.cudart`` in
older cuda-python), then of ``nvidia-smi``. Both are imported or run only when asked. Tests replace
:data:`PROBES` (or call :func:`query_gpu` with their own probes).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import NoGpuError

log = logging.getLogger(__name__)

NVIDIA_SMI_QUERY = ("--query-gpu=name,compute_cap", "--format=csv,noheader")


@dataclass(frozen=True)
class GpuInfo:
    """The GPU engines are built for: ``name`` as CUDA reports it, ``compute_capability`` "9.0"."""

    name: str
    compute_capability: str
    source: str = ""


class ProbeFailed(Exception):
    """One way of asking for the GPU did not answer; the message says why."""


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python before 12.6
        except ImportError:
            raise ProbeFailed("cuda-python is not installed (pip install 'cuda-python>=12')") from None
    return cudart


def cuda_python_gpu() -> GpuInfo:
    """The current CUDA device via ``cudaGetDevice`` and ``cudaGetDeviceProperties``."""
    cudart = _cudart()
    try:
        err, device = cudart.cudaGetDevice()
        if err != cudart.cudaError_t.cudaSuccess:
            raise ProbeFailed(f"cuda-python: cudaGetDevice returned {getattr(err, 'name', err)}")
        err, props = cudart.cudaGetDeviceProperties(device)
    except (OSError, RuntimeError) as exc:  # no driver library to load
        raise ProbeFailed(f"cuda-python: {exc}") from None
    if err != cudart.cudaError_t.cudaSuccess:
        raise ProbeFailed(f"cuda-python: cudaGetDeviceProperties({device}) returned "
                          f"{getattr(err, 'name', err)}")
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(name.strip(), f"{props.major}.{props.minor}", "cuda-python")


def _visible_device() -> str | None:
    """The first entry of ``CUDA_VISIBLE_DEVICES`` (an index or UUID for ``nvidia-smi -i``)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    first = value.split(",")[0].strip()
    if not first or first.startswith("-"):
        raise ProbeFailed(f"CUDA_VISIBLE_DEVICES={value!r} hides every GPU")
    return first


def parse_nvidia_smi(text: str) -> GpuInfo:
    """``"NVIDIA H100 80GB HBM3, 9.0"`` (first line) -> GpuInfo."""
    line = next((l for l in text.splitlines() if l.strip()), "")
    name, _, cap = line.rpartition(",")
    name, cap = name.strip(), cap.strip()
    if not name or not cap.replace(".", "", 1).isdigit():
        raise ProbeFailed(f"nvidia-smi: expected 'NAME, MAJOR.MINOR', got {line!r}")
    return GpuInfo(name, cap, "nvidia-smi")


def nvidia_smi_gpu(run: Callable = subprocess.run, which: Callable = shutil.which) -> GpuInfo:
    """The first visible GPU from ``nvidia-smi --query-gpu=name,compute_cap``."""
    exe = which("nvidia-smi")
    if exe is None:
        raise ProbeFailed("nvidia-smi not found on PATH")
    device = _visible_device()
    cmd = [exe, *NVIDIA_SMI_QUERY, *(["-i", device] if device is not None else [])]
    try:
        proc = run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProbeFailed(f"nvidia-smi failed: {exc}") from None
    if proc.returncode != 0:
        first = (proc.stderr or proc.stdout or "").strip().splitlines()[:1]
        raise ProbeFailed(f"nvidia-smi exited with {proc.returncode}"
                          + (f": {first[0]}" if first else ""))
    return parse_nvidia_smi(proc.stdout)


def nvidia_gpu_present() -> bool:
    """Whether an NVIDIA GPU is likely usable here, without loading any CUDA library: the
    kernel driver is loaded and ``CUDA_VISIBLE_DEVICES`` does not hide every device."""
    if not Path("/proc/driver/nvidia/version").exists() and shutil.which("nvidia-smi") is None:
        return False
    try:
        _visible_device()
    except ProbeFailed:
        return False
    return True


#: The ways of asking, in order; the first that answers wins.
PROBES: list[Callable[[], GpuInfo]] = [cuda_python_gpu, nvidia_smi_gpu]


def query_gpu(probes=None) -> GpuInfo:
    """The GPU engines will be built on; :class:`NoGpuError` (one line) when none answers."""
    reasons = []
    for probe in PROBES if probes is None else probes:
        try:
            gpu = probe()
        except ProbeFailed as exc:
            reasons.append(str(exc))
            continue
        log.debug("GPU %r, compute capability %s (from %s)", gpu.name, gpu.compute_capability,
                  gpu.source)
        return gpu
    raise NoGpuError("no NVIDIA GPU found (" + "; ".join(reasons) + "): a TensorRT engine is "
                      "built on the GPU model it will run on; run `s3pot build` there, or print "
                      "the equivalent commands with `s3pot build --print-commands`")
