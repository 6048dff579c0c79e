"""The persistent TensorRT timing cache: kernel timings kept between builds.

TensorRT refuses a cache made on another device (``set_timing_cache(cache, ignore_mismatch=False)``
fails), so each file is keyed by GPU name, compute capability and TensorRT version, under
``$XDG_CACHE_HOME/s3pot/tensorrt/`` (``~/.cache/s3pot/tensorrt/`` without it).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from s3pot.core.atomic import write_bytes_atomic

from s3pot.core.gpu import GpuInfo
from s3pot.core.machine import user_cache_dir

log = logging.getLogger(__name__)

TIMING_CACHE_SUFFIX = ".timing"


def default_cache_dir() -> Path:
    return user_cache_dir("tensorrt")


def cache_key(gpu: GpuInfo, tensorrt_version: str) -> str:
    """``NVIDIA_H100_80GB_HBM3-sm90-trt10.16.0.1``: safe as a file name."""
    name = re.sub(r"[^A-Za-z0-9.]+", "_", gpu.name).strip("_") or "gpu"
    return f"{name}-sm{gpu.compute_capability.replace('.', '')}-trt{tensorrt_version}"


def timing_cache_path(gpu: GpuInfo, tensorrt_version: str, directory=None) -> Path:
    """The cache file for this GPU and TensorRT version (in ``directory`` or the default one)."""
    directory = Path(directory) if directory is not None else default_cache_dir()
    return directory / f"{cache_key(gpu, tensorrt_version)}{TIMING_CACHE_SUFFIX}"


def attach(config, path: Path) -> bool:
    """Give ``config`` the cache stored at ``path`` (a new one if absent or refused).

    Returns whether stored timings were loaded. A file TensorRT refuses (another device or
    version, damaged) is logged and replaced after the build.
    """
    data = b""
    if path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        if data:
            log.info("timing cache '%s' loaded (%d bytes)", path, len(data))
        return bool(data)
    log.warning("timing cache '%s' was refused by TensorRT (made on another GPU or TensorRT "
                "version, or damaged); starting a new one", path)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def save(config, path: Path) -> Path:
    """Write the config's cache (with this build's timings) to ``path``, atomically."""
    data = bytes(config.get_timing_cache().serialize())
    write_bytes_atomic(path, data)
    log.info("timing cache '%s' saved (%d bytes)", path, len(data))
    return path
