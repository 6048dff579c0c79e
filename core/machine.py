"""What this machine has and where s3pot may keep files on it: the CPU as ``/proc/cpuinfo`` states
it, installed packages and their versions (from metadata, nothing imported), and the user cache.

Shared by the runtime's caches (ONNX Runtime's optimised graphs, OpenVINO's compiled models,
Numba's kernels, TensorRT's timing cache), ``s3pot doctor``, ``--backend auto`` and ``s3pot
bench``.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def cpuinfo(key: str) -> str | None:
    """The value of the first ``key`` line of ``/proc/cpuinfo`` (``model name``, ``flags``), or
    None where there is no such file or line."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((l for l in text.splitlines() if l.startswith(key)), None)
    return None if line is None else line.split(":", 1)[-1].strip()


def package_version(*names: str) -> tuple[str | None, str | None]:
    """``(distribution, version)`` of the first of ``names`` that is installed (e.g.
    ``onnxruntime-gpu`` before ``onnxruntime``), else ``(None, None)``."""
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (found, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def user_cache_dir(tool: str) -> Path:
    """``$XDG_CACHE_HOME/s3pot/TOOL`` (``~/.cache/s3pot/TOOL`` without it)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "s3pot" / tool


def write_error(folder: Path) -> str | None:
    """Why ``folder`` cannot be made and written to, None when it can. It writes a file rather than
    asking ``os.access``, which root passes even on a read-only mount."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-").close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def first_writable(roots) -> Path | None:
    """The first of ``roots`` that exists or can be made, and can be written; None when none can."""
    return next((root for root in roots if write_error(root) is None), None)
