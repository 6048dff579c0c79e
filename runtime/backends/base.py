"""What every backend's runner is: a context manager that runs the four stages of the IO table.

A runner (Polygraphy's pattern) is built cheaply, does its heavy setup in :meth:`Runner.activate`
(sessions, engines, device buffers), runs stages with :meth:`Runner.infer`, which checks every
feed's name, dtype and shape against :mod:`s3pot.core.io_table` before the backend sees it, and
frees what it holds in :meth:`Runner.deactivate`::

    with runner:                         # activate ... deactivate
        out = runner.infer("encoder", {PIXELS: pixels})

A backend implements ``_activate``, ``_deactivate`` and ``_infer`` (checked feeds in, the stage's
outputs as host NumPy arrays out) and sets :attr:`Runner.info`. The stage helpers
(:meth:`~Runner.encode`, ...) and prompt selection are shared; a backend whose outputs live on a
GPU overrides :meth:`~Runner.select` to hand FE's tokens to the CUDA kernel without a host copy.

What a runner runs with (variant, normalisation, face set) comes from its model: the export
manifest for graphs and engines, the adapter for PyTorch (:attr:`Runner.context`).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from s3pot.core.errors import S3potError, S3potInputError
from s3pot.core.io_table import (DECODER, ENCODER, FE, IMAGE_EMBEDDINGS, INITIAL_POINT, PAIR_BATCH,
                                 PIXELS, POINT_COORDS, POINT_LABELS, SA, SPARSE_PROMPTS, get_stage)

log = logging.getLogger(__name__)

#: The timings key of prompt selection (the stages' keys are their IO-table names).
SELECTION_TIMING = "prompt_selection"


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner runs on, for logs, reports and ``s3pot doctor``."""

    backend: str  # "onnxruntime", "tensorrt", "torch"
    version: str  # of the backend's library
    device: str  # "cpu" or the GPU's name
    provider: str  # execution provider / engine kind actually used
    precision: str  # "fp32", "fp16", "bf16"
    source: str  # export folder, engine folder or variant

    def __str__(self) -> str:
        return (f"{self.backend} {self.version} ({self.provider}, {self.precision}) on "
                f"{self.device}: {self.source}")


@contextlib.contextmanager
def timed(timings: dict | None, stage: str):
    """``with timed(timings, stage):`` adds the block's wall time to ``timings[stage]`` (nothing
    when ``timings`` is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


#: Images per encoder run on a CPU. A ViT encoder materialises the attention of its global blocks
#: (heads x 4096 x 4096 floats per image, several copies): measured on ViT-B in ONNX Runtime, 3.1
#: GB peak at batch 1 against 6.0 GB at batch 2, and two batch-1 runs took 13.75 s against 14.55 s
#: for one batch-2 run (PyTorch eager: 22.7 s against 24.8 s). Image and reference go through one
#: at a time on a CPU; a GPU takes the batch.
CPU_ENCODER_BATCH = 1


def encode_in_parts(run, pixels: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """The encoder's outputs for ``pixels`` (``B x 3 x 1024 x 1024``) computed ``step`` images at
    a time by ``run(feeds) -> outputs`` and concatenated along the batch."""
    parts = [run({PIXELS: pixels[i:i + step]}) for i in range(0, len(pixels), step)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


@dataclass(frozen=True)
class ModelContext:
    """What the model was made with; a pipeline runs it with exactly this (see Pipeline)."""

    variant: str
    normalization: str  # default normalisation when ``trained`` is None
    trained: dict | None = None  # {normalization, face_set, source} of an adapter, or None


def export_context(manifest: dict, folder) -> ModelContext:
    """What an export folder's graphs (and engines built from them) were made with, from its
    manifest: a pipeline runs them with exactly this normalisation and face set."""
    from s3pot.core.spec import resolve_face_set

    trained = {"normalization": manifest["normalization"],
               "face_set": resolve_face_set(manifest["face_set"]),
               "source": f"export '{folder}' ({manifest['variant']})"}
    return ModelContext(variant=manifest["variant"], normalization=manifest["normalization"],
                        trained=trained)


def check_variant(manifest: dict, folder, variant: str | None) -> None:
    """``variant``, when asked for, must be the export's."""
    from s3pot.core.errors import ExportError

    if variant is not None and manifest["variant"] != variant:
        raise ExportError(f"export folder '{folder}': expected variant {variant!r}, got "
                          f"{manifest['variant']!r} (its manifest)")


class Runner:
    """Base class of every backend's runner. Subclasses set :attr:`name` and implement
    ``_activate``, ``_infer`` and ``_deactivate``.

    ``thread_safe``: whether :meth:`infer` may be called from several threads at once. A runner
    that is not (one CUDA stream and one set of device buffers) is serialised by the pipeline.
    """

    name = "runner"
    thread_safe = False

    def __init__(self, context: ModelContext) -> None:
        self.context = context
        self.is_active = False
        self._info: RunnerInfo | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def activate(self) -> "Runner":
        """Load what the runner runs (sessions, engines, buffers); idempotent."""
        with self._lock:
            if not self.is_active:
                self._activate()
                self.is_active = True
                log.info("activated %s", self.info)
        return self

    def deactivate(self) -> None:
        """Free what :meth:`activate` loaded; idempotent."""
        with self._lock:
            if self.is_active:
                self._deactivate()
                self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> bool:
        self.deactivate()
        return False

    @property
    def info(self) -> RunnerInfo:
        if self._info is None:
            raise S3potError(f"{self.name} runner: not activated yet (use `with runner:` or "
                             "runner.activate())")
        return self._info

    def describe(self) -> str:
        return str(self.info) if self._info is not None else f"{self.name} (not activated)"

    # -- running -----------------------------------------------------------------------------
    def infer(self, stage: str, feeds: dict) -> dict[str, np.ndarray]:
        """Run ``stage`` on ``feeds`` (input name -> array); returns output name -> host array.

        Feeds are checked against the IO table first (names, dtypes, shapes, shared axes)."""
        io = get_stage(stage)
        checked = io.check_feeds(feeds, where=f"{self.name} stage {io.name!r}")
        if not self.is_active:
            self.activate()
        return self._infer(io.name, checked)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """``B x 3 x 1024 x 1024`` -> embeddings ``B x 256 x 64 x 64``."""
        return self.infer(ENCODER.name, {PIXELS: pixels})[IMAGE_EMBEDDINGS]

    def enhance(self, embeddings: np.ndarray, point: np.ndarray) -> np.ndarray:
        """Embeddings ``B x 256 x 64 x 64``, point ``B x 1 x 2`` -> tokens ``B x 4096 x 256``."""
        return self.infer(FE.name, {IMAGE_EMBEDDINGS: embeddings, INITIAL_POINT: point})[
            FE.output_names[0]]

    def select(self, embeddings: np.ndarray, point: np.ndarray, face_mask: np.ndarray,
               selector: str = "auto", timings: dict | None = None):
        """FE on the image / reference pair, then prompt selection (SPEC stages 3-4).

        ``embeddings`` ``2 x 256 x 64 x 64`` (Z, Z_r), ``point`` ``2 x 1 x 2``, ``face_mask``
        ``64 x 64`` bool. Returns a :class:`~s3pot.kernels.reference.PromptSelection`; adds the
        seconds of ``"fe"`` and ``"prompt_selection"`` to ``timings`` when given."""
        from s3pot.kernels import select_prompts

        with timed(timings, FE.name):
            enhanced = self.enhance(embeddings, point)  # 2 x 4096 x 256: Z_e, Z_re
        with timed(timings, SELECTION_TIMING):
            return select_prompts(enhanced[0], enhanced[1], face_mask, backend=selector)

    def _device_select_feeds(self, embeddings: np.ndarray, point: np.ndarray,
                             face_mask: np.ndarray) -> dict:
        """FE's checked feeds for a :meth:`select` that keeps FE's output on the GPU: the pair
        batch and the face mask are refused before FE runs; the runner is activated."""
        from s3pot.kernels.checks import check_face_mask

        where = f"{self.name} stage {FE.name!r} (prompt selection)"
        feeds = FE.check_feeds({IMAGE_EMBEDDINGS: embeddings, INITIAL_POINT: point}, where=where)
        batch = feeds[IMAGE_EMBEDDINGS].shape[0]
        if batch != PAIR_BATCH:
            raise S3potInputError(f"{where}: expected a batch of {PAIR_BATCH} (the image and its "
                                  f"reference), got {batch}")
        check_face_mask(face_mask)
        if not self.is_active:
            self.activate()
        return feeds

    def reweight(self, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Points ``1 x N x 2``, labels ``1 x N`` -> prompts ``1 x (N + 1) x 256``."""
        return self.infer(SA.name, {POINT_COORDS: points, POINT_LABELS: labels})[SPARSE_PROMPTS]

    def decode(self, embeddings: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        """Embeddings ``1 x 256 x 64 x 64``, prompts ``1 x (N + 1) x 256`` -> ``1 x 1 x 256 x 256``."""
        return self.infer(DECODER.name, {IMAGE_EMBEDDINGS: embeddings, SPARSE_PROMPTS: prompts})[
            DECODER.output_names[0]]

    # -- to implement ------------------------------------------------------------------------
    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _infer(self, stage: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError
