"""Face detection with MediaPipe's BlazeFace models: boxes, six keypoints and a score per face.

The model sees the whole photo letterboxed to its square input and regresses, for every anchor
of an SSD grid, a box and six keypoints (right eye, left eye, nose tip, mouth centre, right and
left ear tragion; "right" is the subject's right, the image's left) relative to the anchor's
centre. Overlapping detections are merged by MediaPipe's weighted non-maximum suppression.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from s3pot.core.errors import S3potInputError

from .litert import TFLiteModel, model_path, sigmoid

#: name -> (file, anchor strides, anchors per cell for each stride in order). The full-range
#: model (faces up to about 5 m away, 192 x 192) finds the small faces of group photos that the
#: short-range one (selfie distance, 128 x 128) misses; the short-range one is surer of a close,
#: partly covered face (a hand over the mouth in a webcam frame), where the full-range one can
#: find nothing.
MODELS = {
    "full": ("face_detection_full_range_sparse.tflite", (4,), (1,)),
    "short": ("face_detection_short_range.tflite", (8, 16), (2, 6)),
}
#: The default: the full-range model, and the short-range one on a photo where it finds no face.
AUTO = "auto"
CHOICES = (AUTO, *MODELS)
DEFAULT_MODEL = AUTO
NUM_KEYPOINTS = 6
RIGHT_EYE, LEFT_EYE = 0, 1
MIN_SCORE = 0.5  # MediaPipe's threshold for these models
NMS_IOU = 0.3  # MediaPipe's weighted-NMS overlap threshold


@dataclass(frozen=True)
class FaceDetection:
    """One face in image pixels: ``box`` ``(x0, y0, x1, y1)``, ``keypoints`` ``6 x 2`` ``(x, y)``."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The box's longer side in pixels."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def anchor_centers(input_size: int, strides, per_cell) -> np.ndarray:
    """``A x 2`` anchor centres ``(x, y)`` in ``0..1``, in the model's output order (stride by
    stride, rows, columns, the cell's anchors)."""
    centers = []
    for stride, count in zip(strides, per_cell):
        cells = input_size // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = (np.stack([xs, ys], axis=-1).reshape(-1, 2) + 0.5) / cells
        centers.append(np.repeat(grid, count, axis=0))
    return np.concatenate(centers).astype(np.float32)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``rgb`` (``H x W x 3``) scaled to fit ``size x size`` (pixel averaging when it shrinks, so a
    large photo does not alias) and centred on black, and the ``2 x 3`` matrix that took image
    pixels there."""
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(rgb, (new_w, new_h),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    boxed = cv2.copyMakeBorder(resized, top, size - new_h - top, left, size - new_w - left,
                               cv2.BORDER_CONSTANT, value=0)
    matrix = np.array([[new_w / width, 0, left], [0, new_h / height, top]], dtype=np.float64)
    return boxed, matrix


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of ``box`` (4) with each of ``boxes`` (``N x 4``, ``x0 y0 x1 y1``): ``N``."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou: float = NMS_IOU) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted NMS over ``boxes`` ``N x 4``, ``keypoints`` ``N x K x 2`` and
    ``scores`` ``N``: the best remaining detection takes every one overlapping it by more than
    ``iou``; their boxes and keypoints are averaged by score, the best one's score kept. Returns
    ``(box 4, keypoints K x 2, score)`` per merged detection, best first."""
    order = np.argsort(-scores, kind="stable")
    merged = []
    while order.size:
        overlap = _iou(boxes[order[0]], boxes[order]) > iou
        group = order[overlap]
        weights = scores[group] / scores[group].sum()
        merged.append((np.tensordot(weights, boxes[group], axes=1),
                       np.tensordot(weights, keypoints[group], axes=1), float(scores[order[0]])))
        order = order[~overlap]
    return merged


class FaceDetector:
    """Finds faces in ``H x W x 3`` uint8 RGB photos with one model, a key of :data:`MODELS`."""

    def __init__(self, model: str = "full", *, min_score: float = MIN_SCORE,
                 threads: int | None = None) -> None:
        if model not in MODELS:
            raise S3potInputError(f"face detector: expected one of {', '.join(CHOICES)}, got {model!r}")
        filename, strides, per_cell = MODELS[model]
        self.model = TFLiteModel(model_path(filename), threads)
        self.size = self.model.input_size[0]
        self.anchors = anchor_centers(self.size, strides, per_cell)  # A x 2
        self.min_score = min_score

    def __call__(self, rgb: np.ndarray) -> list[FaceDetection]:
        """Every face found, largest first."""
        boxed, matrix = letterbox(rgb, self.size)
        regressors, logits = self.model(boxed.astype(np.float32) / 127.5 - 1.0)  # model range -1..1
        scores = sigmoid(logits.reshape(-1))  # A
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw = regressors.reshape(-1, 4 + 2 * NUM_KEYPOINTS)[keep] / self.size  # A' x 16, in 0..1
        anchors = self.anchors[keep]
        center, half = raw[:, :2] + anchors, raw[:, 2:4] / 2
        boxes = np.concatenate([center - half, center + half], axis=1) * self.size  # letterbox px
        points = (raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None]) * self.size
        faces = []
        for box, kps, score in weighted_nms(boxes, points, scores[keep]):
            faces.append(FaceDetection(box=_unbox(box.reshape(2, 2), matrix).reshape(4),
                                       keypoints=_unbox(kps, matrix), score=score))
        return sorted(faces, key=lambda f: -f.size)


def _unbox(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Letterbox pixels back to image pixels (``N x 2``)."""
    return (points - matrix[:, 2]) / np.diag(matrix[:, :2])


class FallbackDetector:
    """Models tried in turn on each photo until one finds a face (``auto``: full, then short)."""

    def __init__(self, models, *, min_score: float = MIN_SCORE, threads: int | None = None) -> None:
        self.detectors = [FaceDetector(model, min_score=min_score, threads=threads) for model in models]

    def __call__(self, rgb: np.ndarray) -> list[FaceDetection]:
        for detector in self.detectors:
            faces = detector(rgb)
            if faces:
                return faces
        return []


def create_detector(name: str = DEFAULT_MODEL, *, min_score: float = MIN_SCORE,
                    threads: int | None = None):
    """The detector called ``name`` (one of :data:`CHOICES`)."""
    if name not in CHOICES:
        raise S3potInputError(f"face detector: expected one of {', '.join(CHOICES)}, got {name!r}")
    models = ["full", "short"] if name == AUTO else [name]
    return FallbackDetector(models, min_score=min_score, threads=threads)
