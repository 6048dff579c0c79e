"""Runs the shipped TensorFlow Lite models with LiteRT (``ai-edge-litert``, Google's TFLite
runtime), imported only when a model is first loaded.

The models are MediaPipe's own (see ``models/NOTICE.md``). MediaPipe's newest releases no longer
carry them (its Tasks API downloads ``.task`` bundles), and its last release that does (0.10.21)
pins ``numpy<2`` and installs ``opencv-contrib-python`` over the base install's OpenCV; LiteRT
runs the same files with neither.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

from s3pot.core.errors import S3potInputError, require

log = logging.getLogger(__name__)

INSTALL_HINT = '"s3pot-rt[face]"'
MODELS = Path(__file__).resolve().parent / "models"


def model_path(name: str) -> Path:
    """A shipped model file by name (``face_landmark.tflite``, ...)."""
    path = MODELS / name
    if not path.is_file():
        raise S3potInputError(f"front-end model '{path}': expected the file shipped with s3pot-rt, "
                              "got no such file (reinstall s3pot-rt)")
    return path


def sigmoid(logits) -> np.ndarray:
    """The models' scores from their logits, clipped to +-100 first as MediaPipe does."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, dtype=np.float64), -100.0, 100.0)))


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence file descriptor 2 for the block: LiteRT's C++ prints "INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU." when it builds an interpreter, and the CLI keeps stderr for one-line
    errors and progress. (Process-wide while it lasts: kept to model loading.)"""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (an embedded interpreter): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class TFLiteModel:
    """One ``.tflite`` model with a single ``1 x H x W x 3`` float32 input.

    ``threads``: CPU threads LiteRT may use (None: its default).
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        interpreter = require("ai_edge_litert.interpreter", INSTALL_HINT)
        self.path = Path(path)
        with quiet_native_stderr():
            self._interpreter = interpreter.Interpreter(model_path=str(self.path), num_threads=threads)
            self._interpreter.allocate_tensors()
        (self._input,) = self._interpreter.get_input_details()
        self._outputs = [d["index"] for d in self._interpreter.get_output_details()]
        log.debug("loaded %s: input %s", self.path.name, self._input["shape"].tolist())

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model's input."""
        _, height, width, _ = self._input["shape"]
        return int(height), int(width)

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        """The model's outputs (copies) for ``pixels``, ``H x W x 3`` float32."""
        self._interpreter.set_tensor(self._input["index"], pixels[None].astype(np.float32, copy=False))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(index).copy() for index in self._outputs]
