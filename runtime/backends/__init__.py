"""Backends run the four exported stages; each is one folder with the same small interface.

A backend is any object with these methods (NumPy arrays in and out, float32):

================  =========================================  ==================================
method            inputs                                     output
================  =========================================  ==================================
``encode``        pixels ``B x 3 x 1024 x 1024``             ``B x 256 x 64 x 64``
``enhance``       embeddings ``B x 256 x 64 x 64``,           ``B x 4096 x 256``
                  point ``B x 1 x 2``
``reweight``      points ``1 x N x 2``, labels ``1 x N``      ``1 x (N + 1) x 256``
``decode``        embeddings ``1 x 256 x 64 x 64``,           ``1 x 1 x 256 x 256``
                  prompts ``1 x (N + 1) x 256``
================  =========================================  ==================================

plus ``name`` (str) and ``describe()`` (a one-line summary for logs and reports). Backends are
imported by name, lazily, so that a machine without torch (or TensorRT) can still use the others.
"""
from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from s3pot.core.errors import S3potInputError, require


class Backend(Protocol):
    name: str

    def describe(self) -> str: ...
    def encode(self, pixels: np.ndarray) -> np.ndarray: ...
    def enhance(self, embeddings: np.ndarray, point: np.ndarray) -> np.ndarray: ...
    def reweight(self, points: np.ndarray, labels: np.ndarray) -> np.ndarray: ...
    def decode(self, embeddings: np.ndarray, prompts: np.ndarray) -> np.ndarray: ...


#: backend name -> (its module, the package it imports, the pip requirement that provides it)
BACKENDS = {
    "torch": ("s3pot.runtime.backends.torch", "torch", "torch"),
    "onnxruntime": ("s3pot.runtime.backends.onnxruntime", "onnxruntime", "onnxruntime-gpu"),
}


def load_backend_module(name: str):
    """The module of backend ``name``; an unknown name lists the valid ones."""
    if name not in BACKENDS:
        raise S3potInputError(f"backend {name!r}: expected one of {', '.join(BACKENDS)}, got {name!r}")
    module, needs, install = BACKENDS[name]
    require(needs, install)
    return importlib.import_module(module)
