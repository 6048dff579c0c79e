"""TensorRT imported on demand, with the exact install command when it is missing.

Nothing in s3pot imports ``tensorrt`` at module level: the engine builder
(:mod:`s3pot.export.tensorrt`) and the TensorRT runtime backend
(:mod:`s3pot.runtime.backends.tensorrt`) call :func:`import_tensorrt` inside the functions that
need it. The major version picks the build recipe (10.x is weakly typed, 11.x strongly typed
only) and the runtime API calls that differ between the two.

Plain Python only, so that :mod:`s3pot.core` stays importable on machines without TensorRT.
"""
from __future__ import annotations

from .errors import ExportError, MissingDependencyError

#: Majors whose Python API s3pot is written against (see shared/notes/TENSORRT.md).
SUPPORTED_MAJORS = (10, 11)

INSTALL_HINT = ("pip install 'tensorrt-cu12>=10' (CUDA 12 driver; 'tensorrt-cu13>=10' for a "
                "CUDA 13 driver; an NVIDIA GPU and driver are needed); without it, "
                "`s3pot build --print-commands` prints the equivalent trtexec / polygraphy commands")


def import_tensorrt():
    """The ``tensorrt`` module, or :class:`MissingDependencyError` carrying the install command."""
    try:
        import tensorrt
    except ImportError as exc:
        detail = "" if exc.name == "tensorrt" else f" (importing it failed: {exc})"
        raise MissingDependencyError(f"TensorRT is not installed{detail}: {INSTALL_HINT}") from None
    return tensorrt


def major_of(version: str) -> int:
    """``"10.16.0.1"`` -> 10."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise ExportError(f"TensorRT version: expected 'MAJOR.MINOR...', got {version!r}") from None


def tensorrt_major(trt) -> int:
    """The major version of an imported ``tensorrt``; majors before 10 are refused."""
    major = major_of(trt.__version__)
    if major < SUPPORTED_MAJORS[0]:
        raise ExportError(f"TensorRT {trt.__version__}: expected 10.x or 11.x, got {major}.x; "
                          f"upgrade with {INSTALL_HINT.split(' (')[0]}")
    return major
