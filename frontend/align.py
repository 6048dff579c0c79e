"""FFHQ alignment: a square crop placed by the eyes and the mouth, and its inverse for paste-back.

The FFHQ convention (Karras et al., the dataset StyleGAN and face generators such as E4S are
trained on) places the crop from four points: the two eye centres and the two mouth corners. Its
side is the larger of twice the eye-to-eye distance and 1.8 times the eye-to-mouth distance, its
centre lies a tenth of the way from the eyes' midpoint to the mouth's, and it is turned so that the
eyes-to-mouth axis is vertical. Here the points come from the face mesh (eye centres as the mean
of each eye's contour, mouth corners as the lips' corners) instead of dlib's 68 landmarks.

Where the crop reaches past the photo's edge it is filled by reflection (FFHQ pads by reflection
too); paste-back takes only what falls inside the photo.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import IMAGE_SIZE

from .mesh import LEFT_EYE_CONTOUR, LEFT_MOUTH_CORNER, RIGHT_EYE_CONTOUR, RIGHT_MOUTH_CORNER

SIDECAR_SUFFIX = "_align.json"
SIDECAR_FORMAT = "s3pot-alignment/1"
EYE_SPAN = 2.0  # crop side / eye-to-eye distance (FFHQ)
MOUTH_SPAN = 1.8  # crop side / eye-to-mouth distance (FFHQ)
CENTER_SHIFT = 0.1  # crop centre: eyes' midpoint + this x eyes-to-mouth (FFHQ)


def ffhq_quad(xy: np.ndarray) -> np.ndarray:
    """The FFHQ crop's corners in image pixels, ``4 x 2``: top-left, bottom-left, bottom-right,
    top-right, from mesh landmarks ``468 x 2``."""
    eye_l = xy[list(RIGHT_EYE_CONTOUR)].mean(axis=0)  # image left: the subject's right eye
    eye_r = xy[list(LEFT_EYE_CONTOUR)].mean(axis=0)
    eye_avg, eye_to_eye = (eye_l + eye_r) / 2, eye_r - eye_l
    mouth_avg = (xy[RIGHT_MOUTH_CORNER] + xy[LEFT_MOUTH_CORNER]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # eye line and mouth axis, averaged
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * EYE_SPAN, np.hypot(*eye_to_mouth) * MOUTH_SPAN)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * CENTER_SHIFT
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


@dataclass(frozen=True)
class Alignment:
    """A face's square crop of side ``size``: ``matrix`` (``2 x 3``) takes photo pixels to crop
    pixels; ``source_size`` is the photo's ``(height, width)``."""

    matrix: np.ndarray
    size: int
    source_size: tuple[int, int]

    @classmethod
    def from_landmarks(cls, xy: np.ndarray, source_size: tuple[int, int],
                       size: int = IMAGE_SIZE) -> "Alignment":
        quad = ffhq_quad(xy).astype(np.float32)
        corners = np.float32([[0, 0], [0, size], [size, 0]])
        matrix = cv2.getAffineTransform(quad[[0, 1, 3]], corners)
        return cls(matrix=matrix.astype(np.float64), size=int(size),
                   source_size=(int(source_size[0]), int(source_size[1])))

    def resized(self, size: int) -> "Alignment":
        """The same crop saved at ``size x size``."""
        if size == self.size:
            return self
        factor = size / self.size
        return Alignment(matrix=self.matrix * factor, size=int(size), source_size=self.source_size)

    @property
    def inverse(self) -> np.ndarray:
        """``2 x 3``: crop pixels to photo pixels."""
        return cv2.invertAffineTransform(self.matrix)

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """Photo points ``N x 2`` in crop pixels."""
        return xy @ self.matrix[:, :2].T + self.matrix[:, 2]

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        """The aligned ``size x size x 3`` crop of the photo ``rgb`` (``H x W x 3`` uint8, the
        ``source_size`` photo)."""
        if rgb.shape[:2] != self.source_size:
            raise S3potInputError(f"alignment: expected a {self.source_size[1]}x{self.source_size[0]} "
                                  f"photo, got {rgb.shape[1]}x{rgb.shape[0]}")
        source, matrix = rgb, self.matrix
        if self.scale < 0.5:  # shrink first with pixel averaging, or the warp would alias
            factor = self.scale * 2
            source = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            matrix = matrix @ np.array([[1 / factor, 0, 0], [0, 1 / factor, 0], [0, 0, 1]])
        return cv2.warpAffine(source, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)

    def paste_mask(self, mask: np.ndarray) -> np.ndarray:
        """A crop-sized bool mask (``size x size``) back in the photo (``H x W`` bool): bilinear
        warp of the 0/1 mask, then the half-way threshold, so edges land within a pixel."""
        mask = np.asarray(mask)
        if mask.shape != (self.size, self.size):
            raise S3potInputError(f"paste-back: expected a {self.size}x{self.size} mask, got "
                                  f"shape {mask.shape}")
        height, width = self.source_size
        back = cv2.warpAffine(mask.astype(np.float32), self.inverse, (width, height),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return back >= 0.5

    def inside(self) -> np.ndarray:
        """``H x W`` bool: the photo's pixels the crop covers."""
        return self.paste_mask(np.ones((self.size, self.size), dtype=bool))

    def to_json(self, **extra) -> dict:
        return {"format": SIDECAR_FORMAT, "size": self.size, "source_size": list(self.source_size),
                "matrix": self.matrix.tolist(), **extra}

    @classmethod
    def from_json(cls, data: dict, name: str = "alignment") -> "Alignment":
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise S3potInputError(f"{name}: expected an s3pot prepare alignment "
                                  f"({SIDECAR_FORMAT!r}), got {got!r}")
        try:
            matrix = np.asarray(data["matrix"], dtype=np.float64)
            size, source = int(data["size"]), tuple(int(v) for v in data["source_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise S3potInputError(f"{name}: expected matrix, size and source_size, got {exc}") from None
        if matrix.shape != (2, 3) or not np.isfinite(matrix).all() or len(source) != 2:
            raise S3potInputError(f"{name}: expected a finite 2 x 3 matrix and (height, width), got "
                                  f"{matrix.shape} and {source}")
        if size <= 0 or min(source) <= 0 or abs(np.linalg.det(matrix[:, :2])) < 1e-12:
            raise S3potInputError(f"{name}: expected positive sizes and an invertible matrix, got "
                                  f"size {size}, source_size {list(source)}")
        return cls(matrix=matrix, size=size, source_size=source)


def sidecar_path(image: Path) -> Path:
    """Where ``s3pot prepare`` puts an aligned crop's alignment: ``NAME_align.json`` beside it."""
    image = Path(image)
    return image.with_name(image.stem + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> tuple[Alignment, dict]:
    """An alignment sidecar and its whole record (``source``, ``face``, ...)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise S3potInputError(f"alignment '{path}': expected s3pot prepare's JSON, got an "
                              f"unreadable file ({exc})") from None
    return Alignment.from_json(data, f"alignment '{path}'"), data
