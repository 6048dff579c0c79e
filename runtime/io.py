"""Reading a sample's files and writing results, with every user mistake reported as
:class:`~s3pot.core.errors.S3potInputError` naming the file, what was expected and what came.

Images are decoded with OpenCV from bytes read by NumPy (``np.fromfile`` + ``cv2.imdecode``), so
paths with non-ASCII characters work on every platform. Writes are atomic: the encoded bytes go to
a temporary file beside the target, which then replaces it, so a failed write leaves no partial
file and keeps an older one intact.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from s3pot.core.atomic import write_bytes_atomic
from s3pot.core.errors import S3potInputError
from s3pot.core.spec import NUM_PARSING_LABELS

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

_UINT16_TO_UINT8 = 257.0  # 65535 / 255: maps 16-bit full scale exactly onto 8-bit full scale


def check_file(path: PathLike, what: str) -> Path:
    """``path`` as a Path, after checking that it names an existing, non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise S3potInputError(f"{what} '{path}': expected an existing file, got no such file")
    if not path.is_file():
        raise S3potInputError(f"{what} '{path}': expected a file, got a directory or special file")
    if path.stat().st_size == 0:
        raise S3potInputError(f"{what} '{path}': expected a non-empty file, got an empty file")
    return path


def _read_bytes(path: PathLike, what: str) -> np.ndarray:
    """The raw bytes of an existing, non-empty file, as a uint8 array."""
    path = check_file(path, what)
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise S3potInputError(f"{what} '{path}': expected a readable file, got {err}") from err


def _decode(path: PathLike, what: str, flags: int) -> np.ndarray:
    """Decode an image file with OpenCV; a file OpenCV cannot decode is the user's mistake."""
    data = _read_bytes(path, what)
    try:
        decoded = cv2.imdecode(data, flags)
    except cv2.error as err:  # some codecs raise instead of returning None
        decoded = None
        logger.debug("cv2.imdecode(%s) raised: %s", path, err)
    if decoded is None:
        raise S3potInputError(
            f"{what} '{path}': expected a complete JPEG/PNG/BMP/WebP/TIFF image, got a file "
            f"OpenCV cannot decode ({data.size} bytes; corrupt, truncated or not an image)")
    return decoded


def _to_uint8(pixels: np.ndarray, path: PathLike, what: str) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return np.rint(pixels / _UINT16_TO_UINT8).astype(np.uint8)
    raise S3potInputError(f"{what} '{path}': expected an 8- or 16-bit image, got {pixels.dtype} pixels")


def load_image(path: PathLike) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB.

    Grayscale becomes three equal channels, an alpha channel is dropped (not composited), 16-bit
    images are scaled to 8 bit (``round(v / 257)``) and the EXIF orientation of a JPEG is applied,
    so the array is the photo as a viewer shows it.
    """
    # IMREAD_COLOR: 3 channels and EXIF orientation; IMREAD_ANYDEPTH: keep 16 bit to scale it ourselves.
    bgr = _decode(path, "image", cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    return cv2.cvtColor(_to_uint8(bgr, path, "image"), cv2.COLOR_BGR2RGB)


def _load_npy(path: PathLike, what: str) -> np.ndarray:
    path = check_file(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise S3potInputError(
                f"{what} '{path}': expected a plain numeric .npy array, got pickled Python objects "
                "(refused: loading pickles can run code); save it with np.save(path, labels) "
                "from an integer array") from err
        raise S3potInputError(f"{what} '{path}': expected a .npy array, got an unreadable file ({err})") from err
    except (OSError, EOFError) as err:
        raise S3potInputError(f"{what} '{path}': expected a .npy array, got an unreadable file ({err})") from err
    if not isinstance(array, np.ndarray):  # np.load of an .npz archive
        raise S3potInputError(f"{what} '{path}': expected a single .npy array, got an .npz archive")
    return array


def _single_channel(array: np.ndarray, path: PathLike, what: str) -> np.ndarray:
    """``H x W`` from ``H x W``, ``H x W x 1`` or a ``H x W x 3|4`` image whose colour channels agree."""
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        colour = array[:, :, :3]
        if not (np.array_equal(colour[:, :, 0], colour[:, :, 1])
                and np.array_equal(colour[:, :, 0], colour[:, :, 2])):
            raise S3potInputError(
                f"{what} '{path}': expected a single-channel (grayscale) label image, got "
                f"{array.shape[2]} channels that differ (a colour or palette PNG; save the label ids "
                "as a grayscale PNG or a .npy array)")
        return colour[:, :, 0]
    if array.ndim != 2:
        raise S3potInputError(f"{what} '{path}': expected an H x W array, got shape {array.shape}")
    return array


def check_parsing(labels: np.ndarray, name: str = "parsing mask") -> np.ndarray:
    """Validate a label map and return it as ``H x W`` uint8.

    Accepts integer arrays and float arrays holding whole numbers, ``H x W`` or ``H x W x 1``, with
    values in ``0 .. NUM_PARSING_LABELS - 1``. ``name`` is how errors refer to the map (a file name).
    """
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[2] == 1:
        labels = labels[:, :, 0]
    if labels.ndim != 2 or labels.size == 0:
        raise S3potInputError(f"{name}: expected an H x W label array, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise S3potInputError(f"{name}: expected integer labels, got NaN or infinite values")
        if not np.array_equal(labels, np.round(labels)):
            raise S3potInputError(f"{name}: expected integer labels, got fractional {labels.dtype} values")
    elif labels.dtype.kind not in "iu":
        raise S3potInputError(f"{name}: expected an integer label array, got dtype {labels.dtype}")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= NUM_PARSING_LABELS:
        raise S3potInputError(
            f"{name}: expected labels in 0..{NUM_PARSING_LABELS - 1}, got values in {low:g}..{high:g}")
    return labels.astype(np.uint8)


def load_parsing(path: PathLike) -> np.ndarray:
    """The reference's parsing labels (``PARSING_LABELS`` ids) as ``H x W`` uint8.

    ``.npy``: an integer (or whole-valued float) ``H x W`` or ``H x W x 1`` array, loaded without
    pickle. Any other suffix: a lossless label image (PNG) whose grey values are the label ids; a
    3-channel image is accepted when its channels are equal. Palette PNGs are not read as indices.
    """
    name = f"parsing mask '{path}'"
    if Path(path).suffix.lower() == ".npy":
        labels = _load_npy(path, "parsing mask")
    else:
        labels = _single_channel(_decode(path, "parsing mask", cv2.IMREAD_UNCHANGED), path, "parsing mask")
    return check_parsing(labels, name)


def load_mask(path: PathLike) -> np.ndarray:
    """A ground-truth mask file as ``H x W`` bool, nonzero = occlusion.

    PNG (or any image): nonzero in any colour channel (alpha ignored); ``.npy``: nonzero entries of
    an ``H x W`` (or ``H x W x 1``) array.
    """
    if Path(path).suffix.lower() == ".npy":
        mask = _load_npy(path, "mask")
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2:
            raise S3potInputError(f"mask '{path}': expected an H x W array, got shape {mask.shape}")
        return mask != 0
    mask = _decode(path, "mask", cv2.IMREAD_UNCHANGED)
    if mask.ndim == 3:
        mask = mask[:, :, :3].any(axis=2)  # BGR(A): alpha says nothing about occlusion
    return mask != 0


def _write_atomic(path: PathLike, image: np.ndarray, what: str) -> Path:
    """Encode ``image`` (OpenCV channel order) by ``path``'s suffix and write it atomically."""
    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix, image)
    except cv2.error as err:
        raise S3potInputError(
            f"{what} '{path}': expected a writable image suffix (.png, .jpg, .bmp, .webp, .tif), "
            f"got {path.suffix!r}") from err
    if not ok:
        raise S3potInputError(f"{what} '{path}': OpenCV could not encode {image.shape} {image.dtype} as {path.suffix!r}")
    write_bytes_atomic(path, encoded.tobytes())
    logger.debug("wrote %s", path)
    return path


def save_mask_png(path: PathLike, mask: np.ndarray) -> Path:
    """Write an ``H x W`` bool mask as a single-channel PNG (0 / 255), atomically; returns the path."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise S3potInputError(f"mask '{path}': expected an H x W mask, got shape {mask.shape}")
    return _write_atomic(path, np.where(mask, np.uint8(255), np.uint8(0)), "mask")


def save_image(path: PathLike, rgb: np.ndarray) -> Path:
    """Write an ``H x W x 3`` uint8 RGB image, format from the suffix, atomically; returns the path."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise S3potInputError(f"image '{path}': expected H x W x 3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    return _write_atomic(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "image")


def save_npy(path: PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as a plain ``.npy`` (no pickle), atomically; returns the path."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return write_bytes_atomic(path, buffer.getvalue())


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))
