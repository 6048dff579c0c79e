"""Pre- and post-processing shared by every backend: NumPy and OpenCV only.

Resampling rules, fixed here once so that every backend sees the same pixels:

- images: each axis is resized on its own, with ``cv2.INTER_AREA`` (box averaging, i.e.
  anti-aliased) where that axis shrinks and ``cv2.INTER_LINEAR`` (half-pixel bilinear) where it
  grows or stays. Both filters are separable, so for a uniform shrink or enlargement this is the
  same as one ``cv2.resize`` call; for a mixed one (a tall photo: height shrinks, width grows)
  neither axis is aliased nor blurred by the other's filter.
- label maps: nearest neighbour on half-pixel centres (source index ``floor((i + 0.5) * in / out)``,
  like OpenCV's ``INTER_NEAREST_EXACT`` and torch's ``nearest-exact``), which keeps labels aligned
  with the half-pixel image resize (plain ``INTER_NEAREST`` shifts them by up to half a source pixel).
- logits: bilinear on half-pixel centres (``cv2.INTER_LINEAR`` on float32), the same as torch
  ``F.interpolate(mode="bilinear", align_corners=False)``, to ``IMAGE_SIZE`` and then to the input size.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import cv2
import numpy as np

from s3pot.core.errors import NoFaceTokensError, S3potInputError
from s3pot.core.spec import (GRID_SIZE, IMAGE_SIZE, LOW_RES_SIZE, NORMALIZATIONS, PAPER_FACE_SET,
                                PARSING_LABELS, face_token_mask, resolve_face_set)

from .io import check_parsing, load_image, load_parsing

ImageSource = np.ndarray | str | os.PathLike


@dataclass(frozen=True)
class Prepared:
    """One sample ready for the encoder.

    pixels: ``2 x 3 x IMAGE_SIZE x IMAGE_SIZE`` float32, the image then the reference, normalised.
    face_mask: ``GRID_SIZE x GRID_SIZE`` bool, the token-level face mask ``M_f``.
    face_region: ``IMAGE_SIZE x IMAGE_SIZE`` bool, pixels whose parsing label is in the face set.
    input_size: ``(H, W)`` of the image as loaded; outputs are returned at this size.
    reference_key: content key of the reference as prepared (SHA-256 of its resized 8-bit pixels
        and the normalisation: a quarter of the bytes of its float pixels), for the pipeline's
        reference cache; ``None``: the cache hashes ``pixels[1]``.
    """

    pixels: np.ndarray
    face_mask: np.ndarray
    face_region: np.ndarray
    input_size: tuple[int, int]
    reference_key: str | None = None


def _check_rgb(rgb: np.ndarray, name: str) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise S3potInputError(f"{name}: expected an H x W x 3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return rgb


def _axis_interpolation(size_in: int, size_out: int) -> int:
    return cv2.INTER_AREA if size_out < size_in else cv2.INTER_LINEAR


def resize_image(rgb: np.ndarray, size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """``H x W x 3`` uint8 RGB resized (not cropped) to ``size`` = ``(h, w)``, default 1024 x 1024.

    Per axis: ``INTER_AREA`` when it shrinks, ``INTER_LINEAR`` otherwise (see the module notes).
    """
    rgb = _check_rgb(rgb, "image")
    (h_in, w_in), (h_out, w_out) = rgb.shape[:2], size
    if (h_in, w_in) == (h_out, w_out):
        return rgb.copy()
    if _axis_interpolation(h_in, h_out) == _axis_interpolation(w_in, w_out):
        return cv2.resize(rgb, (w_out, h_out), interpolation=_axis_interpolation(h_in, h_out))
    # Mixed: one axis at a time, in float so the intermediate is not rounded to uint8.
    tall = cv2.resize(rgb.astype(np.float32), (w_in, h_out), interpolation=_axis_interpolation(h_in, h_out))
    out = cv2.resize(tall, (w_out, h_out), interpolation=_axis_interpolation(w_in, w_out))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _mean_std(normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """``NORMALIZATIONS[normalization]`` as two ``3 x 1 x 1`` float32 arrays."""
    if normalization not in NORMALIZATIONS:
        raise S3potInputError(
            f"normalization: expected one of {sorted(NORMALIZATIONS)}, got {normalization!r}")
    return tuple(np.asarray(v, np.float32).reshape(3, 1, 1) for v in NORMALIZATIONS[normalization])


def normalize(rgb1024: np.ndarray, normalization: str = "sam", out: np.ndarray | None = None) -> np.ndarray:
    """``IMAGE_SIZE x IMAGE_SIZE x 3`` uint8 RGB as ``3 x IMAGE_SIZE x IMAGE_SIZE`` float32,
    ``(x - mean) / std`` with ``NORMALIZATIONS[normalization]`` (``"sam"`` or ``"unit"``), into
    ``out`` when given.

    One contiguous plane at a time (OpenCV splits the channels), in place: the same float32
    operations as ``(chw - mean) / std``, so the same bits, in 1.5 ms instead of 22 ms (the
    strided cast of a transposed view was the cost)."""
    mean, std = _mean_std(normalization)
    rgb1024 = _check_rgb(rgb1024, "image")
    if rgb1024.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise S3potInputError(
            f"image: expected {IMAGE_SIZE} x {IMAGE_SIZE} x 3 after resize, got {rgb1024.shape}")
    if out is None:
        out = np.empty((3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for channel, plane in enumerate(cv2.split(np.ascontiguousarray(rgb1024))):
        target = out[channel]
        target[...] = plane  # uint8 -> float32
        np.subtract(target, mean[channel], out=target)
        np.divide(target, std[channel], out=target)
    return out


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An ``H x W`` label or bool map resized to ``size`` = ``(h, w)`` by half-pixel nearest neighbour."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise S3potInputError(f"label map: expected a non-empty H x W array, got shape {labels.shape}")
    rows, cols = (
        np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp), n_in - 1)
        for n_in, n_out in zip(labels.shape, size))
    return labels[rows[:, None], cols[None, :]]


def resize_parsing(labels: np.ndarray) -> np.ndarray:
    """An ``H x W`` parsing map resized to ``IMAGE_SIZE x IMAGE_SIZE`` by nearest neighbour."""
    return resize_nearest(labels, (IMAGE_SIZE, IMAGE_SIZE))


def _load(source: ImageSource, name: str) -> tuple[np.ndarray, str]:
    if isinstance(source, np.ndarray):
        return _check_rgb(source, name), name
    return load_image(source), f"{name} '{source}'"


def _face_names(face_set: tuple[int, ...]) -> str:
    return ", ".join(f"{label} {PARSING_LABELS[label]}" for label in face_set)


#: Largest relative difference of aspect ratio between a parsing map and its reference.
ASPECT_TOLERANCE = 0.01


def _same_frame(labels_hw: tuple[int, int], reference_hw: tuple[int, int]) -> bool:
    """A parsing map fits its reference when the sizes match or only the resolution differs (a
    face parser's 512 x 512 map of a 1024 x 1024 reference): both are resized to 1024 x 1024."""
    if tuple(labels_hw) == tuple(reference_hw):
        return True
    (hl, wl), (hr, wr) = labels_hw, reference_hw
    return abs((hl / wl) / (hr / wr) - 1) <= ASPECT_TOLERANCE


#: Smallest image side: one pixel per token of the 64 x 64 grid.
MIN_SIDE = GRID_SIZE


def check_pair(image: np.ndarray, reference: np.ndarray, image_name: str = "image",
               reference_name: str = "reference") -> None:
    """The image and its reference are compared token by token after both are resized to 1024 x
    1024, so they must show the same frame: the same aspect ratio (within ``ASPECT_TOLERANCE``;
    the resolutions may differ) and at least ``MIN_SIDE`` pixels a side."""
    for rgb, name in ((image, image_name), (reference, reference_name)):
        if min(rgb.shape[:2]) < MIN_SIDE:
            raise S3potInputError(f"{name}: expected at least {MIN_SIDE} x {MIN_SIDE} pixels (one "
                                  f"per token of the {GRID_SIZE} x {GRID_SIZE} grid), got "
                                  f"{rgb.shape[1]} x {rgb.shape[0]}")
    if not _same_frame(image.shape[:2], reference.shape[:2]):
        raise S3potInputError(
            f"{image_name} and {reference_name}: expected the same aspect ratio (the same aligned "
            f"face; resolutions may differ), got {image.shape[1]} x {image.shape[0]} and "
            f"{reference.shape[1]} x {reference.shape[0]}")


def prepare_inputs(image: ImageSource, reference: ImageSource, parsing: ImageSource, *,
                   normalization: str = "sam", face_set=PAPER_FACE_SET) -> Prepared:
    """Load (when given paths), check, resize and normalise one sample.

    ``image`` and ``reference``: ``H x W x 3`` uint8 RGB arrays or image files, any sizes (both are
    resized to ``IMAGE_SIZE``). ``parsing``: the reference's ``H_r x W_r`` label array or file; it
    must have the reference's size or its aspect ratio. ``face_set``: a name from ``FACE_SETS`` or label ids.
    Raises :class:`NoFaceTokensError` when the parsing map marks no token centre as face.
    """
    face_set = resolve_face_set(face_set)
    _mean_std(normalization)  # fail on a bad name before any decoding work
    image, image_name = _load(image, "image")
    reference, reference_name = _load(reference, "reference")
    check_pair(image, reference, image_name, reference_name)
    if isinstance(parsing, np.ndarray):
        parsing_name = "parsing mask"
        labels = check_parsing(parsing, parsing_name)
    else:
        parsing_name = f"parsing mask '{parsing}'"
        labels = load_parsing(parsing)
    if not _same_frame(labels.shape, reference.shape[:2]):
        raise S3potInputError(
            f"{parsing_name}: expected the size of {reference_name}, (H, W) = {reference.shape[:2]}, "
            f"or another size of the same aspect ratio, got {labels.shape}")

    labels1024 = resize_parsing(labels)  # 1024 x 1024
    face_region = np.isin(labels1024, face_set)
    if not face_region.any():
        found = ", ".join(str(v) for v in np.unique(labels))
        raise NoFaceTokensError(
            f"{parsing_name}: expected some pixels labelled as face ({_face_names(face_set)}), "
            f"got only labels {found}")
    face_mask = face_token_mask(labels1024, face_set)  # 64 x 64
    if not face_mask.any():
        raise NoFaceTokensError(
            f"{parsing_name}: expected a face label ({_face_names(face_set)}) at some token centre, "
            f"got face pixels ({int(face_region.sum())} of {face_region.size} at {IMAGE_SIZE}x{IMAGE_SIZE}) "
            "at none of them")
    pixels = np.empty((2, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    normalize(resize_image(image), normalization, out=pixels[0])
    reference1024 = np.ascontiguousarray(resize_image(reference))
    normalize(reference1024, normalization, out=pixels[1])
    key = hashlib.sha256(reference1024.data)
    key.update(normalization.encode())
    return Prepared(pixels=pixels, face_mask=face_mask, face_region=face_region,
                    input_size=image.shape[:2], reference_key=key.hexdigest())


def postprocess_logits(low_res_logits: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The decoder's ``LOW_RES_SIZE x LOW_RES_SIZE`` logits (leading singleton axes allowed, e.g.
    ``1 x 1 x 256 x 256``) as ``H x W`` float32 logits at ``input_size`` = ``(H, W)``: bilinear to
    ``IMAGE_SIZE x IMAGE_SIZE`` and then to the input size. Occlusion mask = result ``> 0``."""
    logits = np.asarray(low_res_logits, dtype=np.float32)
    if logits.shape[-2:] != (LOW_RES_SIZE, LOW_RES_SIZE) or logits.size != LOW_RES_SIZE ** 2:
        raise S3potInputError(
            f"decoder logits: expected {LOW_RES_SIZE} x {LOW_RES_SIZE} (leading axes of size 1 "
            f"allowed), got {logits.shape}")
    logits = logits.reshape(LOW_RES_SIZE, LOW_RES_SIZE)
    full = cv2.resize(logits, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)  # 1024 x 1024
    height, width = input_size
    if (height, width) == (IMAGE_SIZE, IMAGE_SIZE):
        return full
    return cv2.resize(full, (width, height), interpolation=cv2.INTER_LINEAR)  # H x W


def points_to_input(points: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """``N x 2`` ``(x, y)`` points in ``IMAGE_SIZE`` pixel space mapped to the input image's pixels
    (half-pixel centres, like the resize): ``N x 2`` float32."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    height, width = input_size
    scale = np.array([width / IMAGE_SIZE, height / IMAGE_SIZE], np.float32)
    return (points + 0.5) * scale - 0.5
