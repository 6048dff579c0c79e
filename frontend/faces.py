"""Finding faces in a photo: detection, then the mesh, then the FFHQ crop of each face."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import IMAGE_SIZE

from .align import Alignment
from .detect import DEFAULT_MODEL, MIN_SCORE, FaceDetection, create_detector
from .mesh import MIN_PRESENCE, FaceLandmarks, FaceMesh
from .parsing import landmark_parsing

log = logging.getLogger(__name__)

MIN_CROP = 64  # the smallest aligned crop: one pixel per token of the 64 x 64 grid


class NoFaceError(S3potInputError):
    """A photo in which no face was found."""


@dataclass(frozen=True)
class Face:
    """One face of a photo: its detection, its landmarks (photo pixels) and its FFHQ crop."""

    detection: FaceDetection
    landmarks: FaceLandmarks
    alignment: Alignment

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        """The aligned crop (``size x size x 3``) of the photo the face was found in."""
        return self.alignment.crop(rgb)

    @property
    def crop_landmarks(self) -> np.ndarray:
        """``468 x 2`` landmarks in crop pixels."""
        return self.alignment.to_crop(self.landmarks.xy)

    def parsing(self) -> np.ndarray:
        """The landmark parsing of the face in its crop (``size x size`` uint8)."""
        size = self.alignment.size
        return landmark_parsing(self.crop_landmarks, (size, size))


class FaceFinder:
    """Detector and mesh together. ``size``: the side of the aligned crops (the runtime's 1024 by
    default); ``min_score``: the detector's threshold; ``threads``: LiteRT's CPU threads."""

    def __init__(self, *, size: int = IMAGE_SIZE, detector: str = DEFAULT_MODEL,
                 min_score: float = MIN_SCORE, threads: int | None = None) -> None:
        if size < MIN_CROP:
            raise S3potInputError(f"crop size: expected at least {MIN_CROP} pixels, got {size}")
        self.size = size
        self.detector = create_detector(detector, min_score=min_score, threads=threads)
        self.mesh = FaceMesh(threads=threads)

    def find(self, rgb: np.ndarray) -> list[Face]:
        """Every face in ``rgb`` (``H x W x 3`` uint8), largest first; faces whose mesh finds no
        face in the detector's crop are dropped."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise S3potInputError(f"photo: expected H x W x 3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        faces = []
        for detection in self.detector(rgb):
            landmarks = self.mesh(rgb, detection)
            if landmarks.presence < MIN_PRESENCE:
                log.info("dropped a detection at %s: the mesh sees no face there (%.2f)",
                         np.round(detection.box).astype(int).tolist(), landmarks.presence)
                continue
            alignment = Alignment.from_landmarks(landmarks.xy, rgb.shape[:2], self.size)
            faces.append(Face(detection=detection, landmarks=landmarks, alignment=alignment))
        return faces

    def find_one(self, rgb: np.ndarray, name: str) -> Face:
        """The largest face of ``rgb``, or :class:`NoFaceError` naming ``name``."""
        faces = self.find(rgb)
        if not faces:
            raise NoFaceError(f"{name}: expected a photo with a face, got none found "
                              f"({rgb.shape[1]}x{rgb.shape[0]} pixels)")
        return faces[0]
