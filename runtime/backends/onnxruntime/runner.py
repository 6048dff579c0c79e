"""Runs the four stages in ONNX Runtime (``onnxruntime`` or ``onnxruntime-gpu``)."""
from __future__ import annotations

import logging

import numpy as np

from s3pot.core.io_table import (DECODER, ENCODER, FE, IMAGE_EMBEDDINGS, INITIAL_POINT, PIXELS,
                                 POINT_COORDS, POINT_LABELS, SA, SPARSE_PROMPTS, StageIO)

from .loader import ExportFolder, load_export

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"


def session_options(threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Memory pattern off: it keeps every run's peak reserved (several GB on the ViT-B encoder)
    # and made the first call slow, for no speed afterwards.
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # no missing-CUDA-library warnings on a CPU machine
    return options


class OnnxRuntimeBackend:
    """The stage methods of :mod:`s3pot.runtime.backends` over an export folder's graphs.

    Every feed is checked against the stage IO table (names, dtypes, shapes) before it runs.
    """

    name = "onnxruntime"

    def __init__(self, export: ExportFolder, *, providers: list[str] | None = None,
                 threads: int = 0) -> None:
        import onnxruntime as ort

        self.export = export
        self.trained_context = export.trained_context
        self.default_normalization = export.manifest["normalization"]
        providers = providers or [CPU]
        options = session_options(threads)
        self.sessions = {name: ort.InferenceSession(str(path), options, providers=providers)
                         for name, path in export.graphs.items()}
        self.providers = self.sessions[ENCODER.name].get_providers()

    @classmethod
    def from_folder(cls, folder, *, precision: str = "fp32", variant: str | None = None,
                    **kwargs) -> "OnnxRuntimeBackend":
        return cls(load_export(folder, precision=precision, variant=variant), **kwargs)

    def describe(self) -> str:
        import onnxruntime as ort

        return (f"onnxruntime {ort.__version__} ({self.providers[0]}, {self.export.precision}) "
                f"on {self.export.folder}")

    def _run(self, stage: StageIO, feeds: dict) -> np.ndarray:
        feeds = stage.check_feeds(feeds, where=f"{self.name} stage {stage.name!r}")
        return self.sessions[stage.name].run(stage.output_names, feeds)[0]

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(ENCODER, {PIXELS: pixels})

    def enhance(self, embeddings: np.ndarray, point: np.ndarray) -> np.ndarray:
        return self._run(FE, {IMAGE_EMBEDDINGS: embeddings, INITIAL_POINT: point})

    def reweight(self, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self._run(SA, {POINT_COORDS: points, POINT_LABELS: labels})

    def decode(self, embeddings: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        return self._run(DECODER, {IMAGE_EMBEDDINGS: embeddings, SPARSE_PROMPTS: prompts})
