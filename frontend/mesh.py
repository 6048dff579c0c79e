"""Dense face landmarks with MediaPipe's face mesh: 468 points per face, in image pixels.

The mesh model sees a ``192 x 192`` crop rotated so that the eyes are level, 1.5 times the face's
size (MediaPipe's region of interest). The first crop comes from the detector's box and eye
keypoints; a second pass recrops around the first pass's landmarks, as MediaPipe's tracking does,
which steadies the points when the detector's box is loose.

Landmark index sets (the mesh's topology, as MediaPipe's ``face_mesh_connections`` lists them)
name the regions the parsing mask and the alignment use. "Right" is the subject's right, which is
the image's left in a frontal photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detect import LEFT_EYE, RIGHT_EYE, FaceDetection
from .litert import TFLiteModel, model_path, sigmoid

NUM_LANDMARKS = 468
MODEL_FILE = "face_landmark.tflite"
ROI_SCALE = 1.5  # MediaPipe's crop around the face
REFINE_PASSES = 1  # recrops from landmarks after the detector's crop
MIN_PRESENCE = 0.5  # below this face-presence score the crop holds no face

# Closed contours, in order around each region.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40,
              185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80,
              191)
RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# Eyebrows: the upper edge outward-in, then the lower edge back.
RIGHT_EYEBROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_EYEBROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
# The nose's bridge, tip and wings (filled as their convex hull).
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220,
        115, 48, 64)
RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER = 61, 291
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's mesh: ``points`` ``468 x 3`` ``(x, y, z)`` in image pixels (``z``: depth in the
    same scale, smaller is nearer), ``presence`` the model's face score in 0..1."""

    points: np.ndarray
    presence: float

    @property
    def xy(self) -> np.ndarray:
        """``468 x 2`` ``(x, y)``."""
        return self.points[:, :2]


def roi_matrix(center: np.ndarray, size: float, angle: float, crop: int) -> np.ndarray:
    """``2 x 3`` matrix taking crop pixels to image pixels: a ``size``-wide square around
    ``center``, its x axis at ``angle`` radians from the image's."""
    scale = size / crop
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    corner = center - (cos * crop / 2 - sin * crop / 2, sin * crop / 2 + cos * crop / 2)
    return np.array([[cos, -sin, corner[0]], [sin, cos, corner[1]]], dtype=np.float64)


def _eye_angle(right: np.ndarray, left: np.ndarray) -> float:
    dx, dy = left - right
    return float(np.arctan2(dy, dx))


def roi_from_detection(face: FaceDetection) -> tuple[np.ndarray, float, float]:
    """Centre, side and angle of the mesh's first crop (MediaPipe's detection-to-ROI)."""
    center = (face.box[:2] + face.box[2:]) / 2
    angle = _eye_angle(face.keypoints[RIGHT_EYE], face.keypoints[LEFT_EYE])
    return center, face.size * ROI_SCALE, angle


def roi_from_landmarks(xy: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Centre, side and angle of a crop around earlier landmarks (MediaPipe's landmarks-to-ROI):
    their bounding box in the eye-levelled frame, squared and scaled."""
    angle = _eye_angle(xy[RIGHT_EYE_OUTER], xy[LEFT_EYE_OUTER])
    cos, sin = np.cos(angle), np.sin(angle)
    levelled = xy @ np.array([[cos, -sin], [sin, cos]])  # rotate by -angle
    low, high = levelled.min(axis=0), levelled.max(axis=0)
    middle = (low + high) / 2
    center = middle @ np.array([[cos, sin], [-sin, cos]])  # rotate back by +angle
    return center, float((high - low).max()) * ROI_SCALE, angle


class FaceMesh:
    """Reads the 468 landmarks of a detected face."""

    def __init__(self, *, threads: int | None = None, refine_passes: int = REFINE_PASSES) -> None:
        self.model = TFLiteModel(model_path(MODEL_FILE), threads)
        self.crop = self.model.input_size[0]
        self.refine_passes = refine_passes

    def _run(self, rgb: np.ndarray, center, size, angle) -> FaceLandmarks:
        matrix = roi_matrix(np.asarray(center, dtype=np.float64), size, angle, self.crop)
        crop = cv2.warpAffine(rgb, matrix, (self.crop, self.crop),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)
        raw, presence = self.model(crop.astype(np.float32) / 255.0)  # model range 0..1
        local = raw.reshape(NUM_LANDMARKS, 3).astype(np.float64)  # crop pixels
        points = np.empty_like(local)
        points[:, :2] = local[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        points[:, 2] = local[:, 2] * size / self.crop
        return FaceLandmarks(points=points, presence=float(sigmoid(presence.reshape(-1)[0])))

    def __call__(self, rgb: np.ndarray, face: FaceDetection) -> FaceLandmarks:
        """The landmarks of ``face`` in ``rgb`` (``H x W x 3`` uint8)."""
        landmarks = self._run(rgb, *roi_from_detection(face))
        for _ in range(self.refine_passes):
            landmarks = self._run(rgb, *roi_from_landmarks(landmarks.xy))
        return landmarks
