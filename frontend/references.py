"""Occlusion-free references, behind one interface.

A :class:`ReferenceSource` gives, for a face found in a photo, the reference crop and its parsing
mask in that face's aligned frame (``size x size``):

- :class:`PhotoReference`: a clean photo of the same person (an enrolment photo, an earlier video
  frame), aligned to the target by the two faces' landmarks and then by intensity (ECC) over the
  face; its parsing is drawn from its own landmarks. The production case.
- :class:`GeneratorReference`: the user's own face generator exported to ONNX (the paper's
  E4S-style model, which repaints the face from the image and its parsing), run by ONNX Runtime
  on the same devices as the pipeline's stages.
- :class:`FileReference`: a reference and parsing made elsewhere, as ``s3pot segment`` takes them.

:meth:`ReferenceSource.fixed` is a reference that does not depend on the target (the photo in the
canonical FFHQ frame, the files), so that a video's frames share one reference and its embedding
is computed once.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import IMAGE_SIZE, NUM_PARSING_LABELS

from .align import Alignment
from .faces import Face, FaceFinder
from .parsing import landmark_parsing

log = logging.getLogger(__name__)

#: The generator's pixel range: name -> (scale, offset) with ``value = pixel / 255 * scale + offset``.
GENERATOR_RANGES = {"-1..1": (2.0, -1.0), "0..1": (1.0, 0.0)}


#: Intensity registration of a photo reference (OpenCV's ECC): the side it works at, the face
#: mask's margin, and the largest correction accepted, as fractions of the crop's side.
REGISTER_SIZE = 256
REGISTER_MARGIN = 0.04
REGISTER_MAX_SHIFT = 0.15
REGISTER_MAX_SCALE = 0.2
REGISTER_ITERATIONS, REGISTER_EPS = 100, 1e-5  # ECC's stopping rule
REGISTER_BLUR = 5  # ECC's Gaussian prefilter, pixels at REGISTER_SIZE


def register(target: np.ndarray, moving: np.ndarray, face: np.ndarray) -> np.ndarray | None:
    """The affine correction (``2 x 3``, target pixels to ``moving`` pixels) that lines ``moving``
    up with ``target`` over ``face`` (``S x S`` bool), both ``S x S x 3`` uint8 crops; None when
    ECC does not converge or asks for more than a small correction.

    Landmarks alone misplace a reference by 8 to 22 crop pixels (at 1024) when the target's face
    is partly covered: the mesh bends around the occluder. Measured on obama.jpg with a card over
    the mouth, the eyes or one side, ECC brings that to 4 to 5 pixels in about 20 ms.
    """
    size = target.shape[0]
    scale = REGISTER_SIZE / size
    small = [cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (REGISTER_SIZE, REGISTER_SIZE),
                        interpolation=cv2.INTER_AREA).astype(np.float32) for rgb in (target, moving)]
    margin = 2 * int(REGISTER_MARGIN * REGISTER_SIZE) + 1
    mask = cv2.dilate(cv2.resize(face.astype(np.uint8), (REGISTER_SIZE, REGISTER_SIZE),
                                 interpolation=cv2.INTER_NEAREST), np.ones((margin, margin), np.uint8))
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, REGISTER_ITERATIONS, REGISTER_EPS)
    try:
        _, warp = cv2.findTransformECC(small[0], small[1], warp, cv2.MOTION_AFFINE, criteria, mask,
                                       REGISTER_BLUR)
    except cv2.error as exc:  # no convergence: keep the landmarks' fit
        log.debug("reference registration did not converge: %s", exc)
        return None
    warp = warp.astype(np.float64)
    warp[:, 2] /= scale
    singular = np.linalg.svd(warp[:, :2], compute_uv=False)
    if (np.abs(warp[:, 2]).max() > REGISTER_MAX_SHIFT * size
            or np.abs(singular - 1).max() > REGISTER_MAX_SCALE):
        log.debug("reference registration rejected: %s", warp.tolist())
        return None
    return warp


def compose(correction: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (``2 x 3``, photo to crop) followed by the inverse of ``correction`` (``2 x 3``,
    crop to crop): ``2 x 3``."""
    square = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    return (np.linalg.inv(square(correction)) @ square(matrix))[:2]


class ReferenceSource:
    """Base class: :meth:`for_face` is the reference of one target face."""

    kind = "reference"

    def for_face(self, photo: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
        """The reference (``size x size x 3`` uint8 RGB) and its parsing (``size x size`` uint8) in
        the aligned frame of ``face``, found in ``photo``."""
        raise NotImplementedError

    def fixed(self, size: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A reference that is the same for every target in the canonical FFHQ frame, or None
        when it must be made per target (a generator)."""
        return None

    def describe(self) -> str:
        return self.kind


class PhotoReference(ReferenceSource):
    """A clean photo of the same person. ``finder`` finds its face (the largest)."""

    kind = "photo"

    def __init__(self, path: Path, finder: FaceFinder) -> None:
        from s3pot.runtime.io import load_image

        self.path = Path(path)
        self.rgb = load_image(self.path)
        self.face = finder.find_one(self.rgb, f"reference photo '{self.path}'")

    def for_face(self, photo: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
        size = face.alignment.size
        # The landmarks give a first fit; LMedS keeps a few misplaced points out of it.
        matrix, _ = cv2.estimateAffinePartial2D(self.face.landmarks.xy.astype(np.float32),
                                                face.crop_landmarks.astype(np.float32),
                                                method=cv2.LMEDS)
        if matrix is None:  # degenerate landmarks; the FFHQ frames still line up
            return self.fixed(size)
        matrix = matrix.astype(np.float64)
        first = Alignment(matrix=matrix, size=size, source_size=self.rgb.shape[:2])
        correction = register(face.crop(photo), first.crop(self.rgb), face.parsing() > 0)
        if correction is not None:
            matrix = compose(correction, matrix)
        return self._warped(Alignment(matrix=matrix, size=size, source_size=self.rgb.shape[:2]))

    def fixed(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        return self._warped(Alignment.from_landmarks(self.face.landmarks.xy, self.rgb.shape[:2], size))

    def _warped(self, alignment: Alignment) -> tuple[np.ndarray, np.ndarray]:
        """The photo's crop by ``alignment`` and the parsing of its landmarks there."""
        size = alignment.size
        return alignment.crop(self.rgb), landmark_parsing(alignment.to_crop(self.face.landmarks.xy),
                                                          (size, size))

    def describe(self) -> str:
        return f"photo '{self.path}'"


class FileReference(ReferenceSource):
    """A reference image and parsing mask made elsewhere, already aligned like the targets;
    resized to the crop (image bilinear, labels nearest)."""

    kind = "files"

    def __init__(self, reference: Path, parsing: Path) -> None:
        from s3pot.runtime.io import load_image, load_parsing
        from s3pot.runtime.preprocess import check_pair

        self.paths = (Path(reference), Path(parsing))
        self.rgb, self.labels = load_image(reference), load_parsing(parsing)
        square = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)  # the aligned crops' frame
        check_pair(square, self.rgb, "aligned crop (square)", f"reference '{reference}'")

    def fixed(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        from s3pot.runtime.preprocess import resize_image, resize_nearest

        return resize_image(self.rgb, (size, size)), resize_nearest(self.labels, (size, size))

    def for_face(self, photo: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
        return self.fixed(face.alignment.size)

    def describe(self) -> str:
        return f"files '{self.paths[0]}' and '{self.paths[1]}'"


class GeneratorReference(ReferenceSource):
    """A face generator exported to ONNX, run by ONNX Runtime.

    The graph's contract: input 0 is the aligned image, ``N x 3 x H x W`` float RGB in
    ``value_range``; input 1 is the face's parsing (landmark parsing, SPEC labels), either label
    ids ``N x H x W`` / ``N x 1 x H x W`` (integer or float) or one-hot ``N x 12 x H x W`` float,
    as the graph declares; output 0 is the repainted face, ``N x 3 x H x W`` in the same range.
    ``H x W`` are the graph's when fixed, else the crop's; the crop is resized to them and the
    output back.
    """

    kind = "generator"

    def __init__(self, path: Path, *, device: str = "auto", value_range: str = "-1..1",
                 threads: int = 0) -> None:
        from s3pot.runtime.backends.onnxruntime.runner import resolve_providers, session_options
        from s3pot.runtime.io import check_file

        import onnxruntime as ort

        if value_range not in GENERATOR_RANGES:
            raise S3potInputError(f"generator range: expected {' or '.join(GENERATOR_RANGES)}, got "
                                  f"{value_range!r}")
        self.path, self.value_range = check_file(path, "generator"), value_range
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads),
                                                providers=resolve_providers(device))
        except Exception as exc:  # ONNX Runtime raises its own types for unreadable graphs
            raise S3potInputError(f"generator '{self.path}': expected an ONNX graph ONNX Runtime "
                                  f"can load, got {type(exc).__name__}: {exc}") from None
        self.inputs, self.outputs = self.session.get_inputs(), self.session.get_outputs()
        self._check_contract()

    def _fail(self, what: str) -> S3potInputError:
        return S3potInputError(f"generator '{self.path}': {what} (see --generator in the help for "
                               "its inputs and output)")

    def _check_contract(self) -> None:
        if len(self.inputs) != 2 or not self.outputs:
            raise self._fail(f"expected 2 inputs (image, parsing) and an output, got "
                             f"{len(self.inputs)} inputs and {len(self.outputs)} outputs")
        image, parsing = self.inputs
        if len(image.shape) != 4 or image.shape[1] != 3 or image.type != "tensor(float)":
            raise self._fail(f"expected input '{image.name}' to be float32 N x 3 x H x W, got "
                             f"{image.type} {image.shape}")
        rank = len(parsing.shape)
        if rank not in (3, 4) or (rank == 4 and parsing.shape[1] not in (1, NUM_PARSING_LABELS)):
            raise self._fail(f"expected input '{parsing.name}' to be N x H x W, N x 1 x H x W or "
                             f"N x {NUM_PARSING_LABELS} x H x W, got {parsing.shape}")

    def _size(self, crop_size: int) -> tuple[int, int]:
        height, width = self.inputs[0].shape[2:]
        fixed = isinstance(height, int) and isinstance(width, int)
        return (height, width) if fixed else (crop_size, crop_size)

    def _parsing_feed(self, labels: np.ndarray) -> np.ndarray:
        spec = self.inputs[1]
        if len(spec.shape) == 4 and spec.shape[1] == NUM_PARSING_LABELS:
            return np.eye(NUM_PARSING_LABELS, dtype=np.float32)[labels].transpose(2, 0, 1)[None]
        dtype = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}.get(spec.type, np.float32)
        feed = labels.astype(dtype)[None]
        return feed[:, None] if len(spec.shape) == 4 else feed

    def for_face(self, photo: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
        from s3pot.runtime.preprocess import resize_image, resize_nearest

        size = face.alignment.size
        labels = face.parsing()
        height, width = self._size(size)
        scale, offset = GENERATOR_RANGES[self.value_range]
        pixels = resize_image(face.crop(photo), (height, width)).astype(np.float32)
        feeds = {self.inputs[0].name: (pixels / 255.0 * scale + offset).transpose(2, 0, 1)[None],
                 self.inputs[1].name: self._parsing_feed(resize_nearest(labels, (height, width)))}
        try:
            (out,) = self.session.run([self.outputs[0].name], feeds)
        except Exception as exc:
            raise self._fail(f"failed to run: {type(exc).__name__}: {exc}") from None
        if out.shape != (1, 3, height, width) or not np.isfinite(out).all():
            raise self._fail(f"expected output '{self.outputs[0].name}' of shape "
                             f"{(1, 3, height, width)} and finite, got {out.shape}"
                             f"{'' if np.isfinite(out).all() else ' with NaN or infinite values'}")
        rgb = np.clip((out[0].transpose(1, 2, 0) - offset) / scale * 255.0, 0, 255)
        return resize_image(np.rint(rgb).astype(np.uint8), (size, size)), labels

    def describe(self) -> str:
        return f"generator '{self.path}'"
