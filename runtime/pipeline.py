"""The S3POT pipeline over any backend (SPEC stages 1-7).

The backend runs the four exported stages; the initial prompt and prompt selection run as
``s3pot.kernels``; pre- and post-processing are NumPy/OpenCV (:mod:`.preprocess`). The pipeline
does not know which backend it drives.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from s3pot.core.errors import S3potError, S3potInputError
from s3pot.kernels import initial_prompt
from s3pot.core.io_table import DECODER, ENCODER, MAX_IMAGE_BATCH, SA
from s3pot.core.spec import TOKEN_CENTERS, prompt_points, resolve_context

from .backends.base import timed
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


def choose_prompts(runner, z: np.ndarray, face_mask: np.ndarray, selector: str = "auto",
                   timings: dict | None = None):
    """Stages 2-4 of one sample whose ``z`` (``2 x 256 x 64 x 64``: ``Z``, ``Z_r``) is known: the
    initial prompt, FE on ``runner`` and greedy prompt selection. Returns the initial token and
    the :class:`~s3pot.kernels.reference.PromptSelection`."""
    with timed(timings, "initial_prompt"):
        token = initial_prompt(z[0], z[1], face_mask)
        point = np.repeat(TOKEN_CENTERS[token].reshape(1, 1, 2), 2, axis=0)  # 2 x 1 x 2
    return int(token), runner.select(z, point, face_mask, selector, timings)


@dataclass
class PipelineStats:
    """Counters over a pipeline's life (what the reference cache saves is counted, not timed)."""

    samples: int = 0
    images_encoded: int = 0  # encoder batch items that were face images
    references_encoded: int = 0  # encoder batch items that were references
    reference_cache_hits: int = 0
    encoder_calls: int = 0


class ReferenceCache:
    """Reference embeddings ``Z_r`` (``256 x 64 x 64``) keyed by the reference's normalised
    pixels, least recently used first out. A reference that stays fixed over many frames (a video
    of one person) is then encoded once. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(pixels: np.ndarray) -> str:
        """Content key of one normalised reference, ``3 x 1024 x 1024`` float32."""
        return hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Pipeline:
    """Segments occlusions on aligned faces with one backend runner.

    Args:
        runner: a :class:`~s3pot.runtime.backends.Runner` (activated here if it is not yet); its
            ``context`` (the adapter's or the export manifest's normalisation and face set)
            fixes the defaults below.
        normalization: pixel normalisation (``sam`` or ``unit``); default: the model's.
        face_set: parsing labels counted as face (``paper``, ``authors`` or label ids); default:
            the model's, else ``paper``. Contradicting what the model was made with is an error.
        selector: prompt-selection kernel (``auto``, ``numba``, ``reference``, ``cuda``).
        reference_cache: how many reference embeddings to keep (0: none), see
            :class:`ReferenceCache`.

    Thread safety: :meth:`segment` and :meth:`segment_batch` may be called from several threads
    on one pipeline. Runners that are not thread-safe themselves (TensorRT, torch with CUDA
    graphs: one stream, one set of buffers) are run one sample batch at a time.
    """

    def __init__(self, runner, *, normalization: str | None = None, face_set=None,
                 selector: str = "auto", reference_cache: int = 4) -> None:
        from s3pot.kernels.selection import resolve_backend

        self.runner = runner
        context = runner.context
        self.normalization, self.face_set = resolve_context(
            normalization, face_set, context.trained, context.normalization)
        resolve_backend(selector)  # an unknown selector fails here, not on the first sample
        self.selector = selector
        self.references = ReferenceCache(reference_cache)
        self.stats = PipelineStats()
        self._stats_lock = threading.Lock()
        # Runners that are not reentrant run one batch at a time; the others run concurrently.
        self._run_lock = contextlib.nullcontext() if runner.thread_safe else threading.Lock()
        self._closed = False
        runner.activate()

    def close(self) -> None:
        """Release the runner's sessions, engines and buffers (after a run in progress on
        another thread ends); the pipeline refuses to run afterwards."""
        with self._run_lock:
            self._closed = True
            self.runner.deactivate()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def prepare(self, image, reference, parsing) -> Prepared:
        """Decode and check one sample (see :func:`~.preprocess.prepare_inputs`)."""
        return prepare_inputs(image, reference, parsing, normalization=self.normalization,
                              face_set=self.face_set)

    def segment(self, image, reference, parsing) -> Segmentation:
        """Segment one sample; ``image``/``reference`` are RGB arrays or files, ``parsing`` the
        reference's label array or file (see :func:`~.preprocess.prepare_inputs`)."""
        return self.segment_batch([(image, reference, parsing)])[0]

    def segment_batch(self, samples) -> list[Segmentation]:
        """Segment several faces (of one frame, say): ``samples`` is a sequence of
        ``(image, reference, parsing)``. The images (and the references not cached) go through
        the encoder together, in batches of up to the encoder's maximum batch; results equal
        separate :meth:`segment` calls. Per-sample ``timings["encoder"]`` is the batch's
        encoder time shared equally."""
        start = time.perf_counter()
        prepared = [self.prepare(*sample) for sample in samples]
        preprocess = (time.perf_counter() - start) / max(1, len(prepared))
        return self.run_batch(prepared, [{"preprocess": preprocess} for _ in prepared])

    def run(self, prepared: Prepared, timings: dict | None = None) -> Segmentation:
        """Stages 1-7 on an already prepared sample."""
        return self.run_batch([prepared], [timings if timings is not None else {}])[0]

    def run_encoded(self, prepared: Prepared, embeddings: np.ndarray,
                    timings: dict | None = None) -> Segmentation:
        """Stages 2-7 of a prepared sample whose encoder outputs are already known:
        ``embeddings`` is ``2 x 256 x 64 x 64`` (``Z``, then ``Z_r``). Training and per-image
        fitting keep their embeddings on disk and draw their masks through here, so a mask they
        report is the runtime's."""
        self._check_open()
        with self._run_lock:
            result = self._segment_encoded(prepared, embeddings, timings if timings is not None else {})
        with self._stats_lock:
            self.stats.samples += 1
        return result

    def run_batch(self, prepared: list[Prepared], timings: list[dict] | None = None) -> list[Segmentation]:
        """Stages 1-7 on already prepared samples."""
        timings = timings or [{} for _ in prepared]
        if len(timings) != len(prepared):
            raise S3potInputError(f"run_batch: expected one timings dict per sample "
                                  f"({len(prepared)}), got {len(timings)}")
        self._check_open()
        with self._run_lock:
            return self._run_batch(prepared, timings)

    def _check_open(self) -> None:
        if self._closed:
            raise S3potError("pipeline: closed (its runner was deactivated); make a new one")

    def _run_batch(self, prepared: list[Prepared], timings: list[dict]) -> list[Segmentation]:
        start = time.perf_counter()
        embeddings = self._encode(prepared)  # per sample: 2 x 256 x 64 x 64, Z and Z_r
        encoder = (time.perf_counter() - start) / max(1, len(prepared))
        results = []
        for sample, z, sample_timings in zip(prepared, embeddings, timings):
            sample_timings[ENCODER.name] = encoder
            results.append(self._segment_encoded(sample, z, sample_timings))
        with self._stats_lock:
            self.stats.samples += len(prepared)
        return results

    def _encode(self, prepared: list[Prepared]) -> list[np.ndarray]:
        """Z and Z_r of every sample: images always, references unless cached (each distinct
        reference once), in encoder batches of at most ``MAX_IMAGE_BATCH``."""
        # (prepare_inputs keys the reference by its 8-bit pixels; other samples are hashed here)
        keys = [p.reference_key or ReferenceCache.key(p.pixels[1]) for p in prepared]
        references = {key: self.references.get(key) for key in dict.fromkeys(keys)}
        hits = sum(1 for key in keys if references[key] is not None)
        missing = [key for key, z in references.items() if z is None]
        encoded = []
        if len(prepared) == 1:  # the sample's own pixels (image, then the reference if missing)
            batches = [prepared[0].pixels if missing else prepared[0].pixels[:1]]
        else:
            first_missing = {key: keys.index(key) for key in missing}
            items = [p.pixels[0] for p in prepared]  # 3 x 1024 x 1024 each
            items += [prepared[first_missing[key]].pixels[1] for key in missing]
            batches = [np.stack(items[begin:begin + MAX_IMAGE_BATCH])  # B x 3 x 1024 x 1024
                       for begin in range(0, len(items), MAX_IMAGE_BATCH)]
        for batch in batches:
            encoded.extend(self.runner.encode(batch))  # B x 256 x 64 x 64
        images, new = encoded[:len(prepared)], encoded[len(prepared):]
        for key, z in zip(missing, new):
            references[key] = z
            self.references.put(key, z.copy())  # not a view that keeps the whole batch alive
        with self._stats_lock:
            self.stats.images_encoded += len(prepared)
            self.stats.references_encoded += len(missing)
            self.stats.reference_cache_hits += hits
            self.stats.encoder_calls += len(batches)
        return [np.stack([z, references[key]]) for z, key in zip(images, keys)]

    def _segment_encoded(self, prepared: Prepared, z: np.ndarray, timings: dict) -> Segmentation:
        """Stages 2-7 of one sample whose ``z`` (``2 x 256 x 64 x 64``) is known."""
        token, selection = choose_prompts(self.runner, z, prepared.face_mask, self.selector, timings)
        points, labels = prompt_points(selection.occlusion, selection.face)
        with timed(timings, SA.name):
            prompts = self.runner.reweight(points[None], labels[None])  # 1 x (N+1) x 256
        with timed(timings, DECODER.name):
            low_res = self.runner.decode(z[:1], prompts)  # 1 x 1 x 256 x 256
        with timed(timings, "postprocess"):
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
