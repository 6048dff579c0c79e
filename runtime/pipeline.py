"""The S3POT pipeline over any backend (SPEC stages 1-7).

The backend runs the four exported stages; the initial prompt and prompt selection run as
``s3pot.kernels``; pre- and post-processing are NumPy/OpenCV (:mod:`.preprocess`). The pipeline
does not know which backend it drives.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from s3pot.kernels import initial_prompt, select_prompts
from s3pot.core.spec import TOKEN_CENTERS, prompt_points, resolve_context

from .preprocess import Prepared, points_to_input, postprocess_logits, prepare_inputs, resize_nearest

log = logging.getLogger(__name__)



@dataclass
class Segmentation:
    """One sample's result, at the input image's size ``H x W``."""

    occlusion: np.ndarray  # H x W bool, M_O
    visible_face: np.ndarray  # H x W bool: face region and not M_O
    logits: np.ndarray  # H x W float32
    low_res_logits: np.ndarray  # 256 x 256 float32, the decoder's output
    initial_token: int
    occlusion_tokens: np.ndarray  # P_O, raster order
    face_tokens: np.ndarray  # P_N, raster order
    input_size: tuple[int, int]
    timings: dict = field(default_factory=dict)  # stage -> seconds

    def points(self, tokens: np.ndarray) -> np.ndarray:
        """Token centres of ``tokens`` in input-image pixels, ``N x 2`` ``(x, y)``."""
        return points_to_input(TOKEN_CENTERS[np.asarray(tokens, dtype=np.int64)], self.input_size)


class Pipeline:
    """Segments occlusions on aligned faces with one backend.

    Args:
        backend: an object with the stage methods of :mod:`s3pot.runtime.backends`; its
            ``trained_context`` (what a loaded adapter was trained with) fixes the defaults below.
        normalization: pixel normalisation (``sam`` or ``unit``); default: the adapter's, else
            the backend's ``default_normalization`` (``sam``).
        face_set: parsing labels counted as face (``paper``, ``authors`` or label ids); default:
            the adapter's, else ``paper``. Contradicting the adapter is an error.
        selector: prompt-selection kernel (``auto``, ``numba``, ``reference``, ``cuda``).
    """

    def __init__(self, backend, *, normalization: str | None = None, face_set=None,
                 selector: str = "auto") -> None:
        self.backend = backend
        self.normalization, self.face_set = resolve_context(
            normalization, face_set, getattr(backend, "trained_context", None),
            getattr(backend, "default_normalization", "sam"))
        self.selector = selector

    def segment(self, image, reference, parsing) -> Segmentation:
        """Segment one sample; ``image``/``reference`` are RGB arrays or files, ``parsing`` the
        reference's label array or file (see :func:`~.preprocess.prepare_inputs`)."""
        start = time.perf_counter()
        prepared = prepare_inputs(image, reference, parsing, normalization=self.normalization,
                                  face_set=self.face_set)
        timings = {"preprocess": time.perf_counter() - start}
        return self.run(prepared, timings)

    def run(self, prepared: Prepared, timings: dict | None = None) -> Segmentation:
        """Stages 1-7 on an already prepared sample."""
        timings = {} if timings is None else timings
        clock = _Clock(timings)
        with clock("encoder"):
            z = self.backend.encode(prepared.pixels)  # 2 x 256 x 64 x 64: Z, Z_r
        with clock("initial_prompt"):
            token = initial_prompt(z[0], z[1], prepared.face_mask)
            point = np.repeat(TOKEN_CENTERS[token].reshape(1, 1, 2), 2, axis=0)  # 2 x 1 x 2
        with clock("fe"):
            enhanced = self.backend.enhance(z, point)  # 2 x 4096 x 256: Z_e, Z_re
        with clock("prompt_selection"):
            selection = select_prompts(enhanced[0], enhanced[1], prepared.face_mask,
                                       backend=self.selector)
            points, labels = prompt_points(selection.occlusion, selection.face)
        with clock("sa"):
            prompts = self.backend.reweight(points[None], labels[None])  # 1 x (N+1) x 256
        with clock("decoder"):
            low_res = self.backend.decode(z[:1], prompts)  # 1 x 1 x 256 x 256
        with clock("postprocess"):
            logits = postprocess_logits(low_res, prepared.input_size)  # H x W
            occlusion = logits > 0
            face_region = resize_nearest(prepared.face_region.astype(np.uint8),
                                         prepared.input_size).astype(bool)
        log.debug("prompts: %d occlusion, %d face; initial token %d", len(selection.occlusion),
                  len(selection.face), token)
        return Segmentation(
            occlusion=occlusion, visible_face=face_region & ~occlusion, logits=logits,
            low_res_logits=low_res.reshape(low_res.shape[-2:]), initial_token=int(token),
            occlusion_tokens=selection.occlusion, face_tokens=selection.face,
            input_size=prepared.input_size, timings=timings)


class _Clock:
    """``with clock(stage):`` adds the block's wall time to ``timings[stage]``."""

    def __init__(self, timings: dict) -> None:
        self.timings = timings

    def __call__(self, stage: str):
        self.stage = stage
        return self

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + time.perf_counter() - self.start
        return False
