"""Backends run the four exported stages; each is one folder with the same files.

============  ==============================================  ====================================
backend       runs                                            needs
============  ==============================================  ====================================
onnxruntime   the graphs of an export folder (``s3pot         onnxruntime-gpu (base install)
              export``), CPU or CUDA execution provider
tensorrt      the engines of ``s3pot build`` on an NVIDIA     tensorrt + an NVIDIA GPU (extra
              GPU, prompt selection on the device             ``gpu``)
torch         S3POT's PyTorch modules: the reference; FP16 /  torch (extra ``torch``)
              BF16 with CUDA graphs on a GPU
openvino      the graphs of an export folder on the CPU,      openvino (extra ``openvino``)
              FP32 or BF16 (AVX512-BF16 / AMX CPUs)
============  ==============================================  ====================================

Each folder holds ``loader.py`` (finds and checks what to run), ``runner.py`` (a
:class:`~.base.Runner`: a context manager with activate / infer / deactivate) and an
``__init__.py`` with ``create_runner(spec)``. Backends are imported by name, lazily, so that a
machine without torch or TensorRT still runs the others; ``auto`` picks one (:mod:`.auto`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from s3pot.core.errors import S3potInputError, require

from .base import ModelContext, Runner, RunnerInfo

#: backend name -> (its module, the package it imports, the pip requirement that provides it)
BACKENDS = {
    "onnxruntime": ("s3pot.runtime.backends.onnxruntime", "onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("s3pot.runtime.backends.tensorrt", "numpy", "numpy"),  # imports tensorrt itself
    "torch": ("s3pot.runtime.backends.torch", "torch", "'s3pot-rt[torch]' (torch, onnx, onnxsim)"),
    "openvino": ("s3pot.runtime.backends.openvino", "openvino", "'s3pot-rt[openvino]' (openvino)"),
}
AUTO = "auto"
#: The precisions a runner may be asked for (graphs and engines come in fp32/fp16; torch and
#: openvino add bf16; openvino runs the int8 encoder of `s3pot quantize`).
RUN_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class ModelSpec:
    """What to run: an export folder (``onnxruntime``, ``tensorrt``) or a variant with its weights
    (``torch``), at a precision, on a device (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

    folder: Path | None = None
    variant: str | None = None
    checkpoint: Path | None = None
    adapter: Path | None = None
    random_weights: bool = False
    seed: int = 0
    precision: str = "fp32"
    device: str = "auto"
    threads: int = 0  # CPU threads (0: the library's default)


def load_backend_module(name: str):
    """The module of backend ``name``; an unknown name lists the valid ones."""
    if name not in BACKENDS:
        raise S3potInputError(f"backend {name!r}: expected one of {', '.join(BACKENDS)}, got {name!r}")
    module, needs, install = BACKENDS[name]
    require(needs, install)
    return importlib.import_module(module)


def create_runner(name: str, spec: ModelSpec) -> Runner:
    """A (not yet activated) runner of backend ``name`` for ``spec``; ``auto`` chooses one and
    logs why (see :func:`.auto.choose`)."""
    if name == AUTO:
        from .auto import choose

        name, _ = choose(spec)
    return load_backend_module(name).create_runner(spec)


__all__ = ["AUTO", "BACKENDS", "ModelContext", "ModelSpec", "RUN_PRECISIONS", "Runner",
           "RunnerInfo", "create_runner", "load_backend_module"]
