"""The ``--save-vis`` overlay: the occlusion tinted, the visible face outlined, the prompts marked."""
from __future__ import annotations

import cv2
import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import IMAGE_SIZE, PATCH_SIZE

#: RGB colours. Occlusion prompts share the occlusion's colour, face prompts the face outline's.
OCCLUSION_COLOR = (255, 40, 40)
FACE_COLOR = (40, 220, 40)
OUTLINE_COLOR = (255, 255, 255)
OCCLUSION_ALPHA = 0.45


def _check_mask(mask: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != size:
        raise S3potInputError(f"{name}: expected the image's size {size}, got {mask.shape}")
    return mask


def _draw_points(canvas: np.ndarray, points, color: tuple[int, int, int], radius: int,
                 marker: int) -> None:
    """Draw ``N x 2`` ``(x, y)`` points as markers with a white halo, in place."""
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        centre = (int(round(x)), int(round(y)))
        cv2.drawMarker(canvas, centre, OUTLINE_COLOR, marker, 2 * radius + 2, max(1, radius // 2 + 1))
        cv2.drawMarker(canvas, centre, color, marker, 2 * radius, max(1, radius // 3))


def overlay(rgb: np.ndarray, occlusion_mask: np.ndarray, face_region: np.ndarray | None = None,
            occlusion_points=(), face_points=()) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB picture of one result.

    rgb: ``H x W x 3`` uint8, the input image. occlusion_mask: ``H x W`` bool, tinted red.
    face_region: ``H x W`` bool or None; the visible face (face region and not occluded) is
    outlined in green. occlusion_points / face_points: ``N x 2`` ``(x, y)`` in the input image's
    pixels, drawn as red crosses / green diamonds.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise S3potInputError(f"image: expected H x W x 3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    size = rgb.shape[:2]
    occlusion = _check_mask(occlusion_mask, size, "occlusion mask")
    canvas = rgb.copy()
    tint = np.asarray(OCCLUSION_COLOR, np.float32)
    canvas[occlusion] = np.rint(
        (1 - OCCLUSION_ALPHA) * canvas[occlusion] + OCCLUSION_ALPHA * tint).astype(np.uint8)

    scale = max(1, round(min(size) / 256))  # marks readable on small and large images alike
    if face_region is not None:
        visible = _check_mask(face_region, size, "face region") & ~occlusion
        contours, _ = cv2.findContours(visible.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, FACE_COLOR, scale, cv2.LINE_AA)
    # Prompts sit on the 64 x 64 token grid: keep each mark inside its own cell.
    spacing = PATCH_SIZE * min(size) / IMAGE_SIZE
    radius = max(2, int(spacing * 0.3))
    _draw_points(canvas, occlusion_points, OCCLUSION_COLOR, radius, cv2.MARKER_TILTED_CROSS)
    _draw_points(canvas, face_points, FACE_COLOR, radius, cv2.MARKER_DIAMOND)
    return canvas


def stamp(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` written across its top-left corner (e.g. "RANDOM WEIGHTS"), so a
    picture cannot be mistaken for a real result once separated from its log."""
    canvas = np.ascontiguousarray(rgb).copy()
    scale = max(0.5, min(canvas.shape[:2]) / 600)
    thickness = max(1, int(round(2 * scale)))
    origin = (int(10 * scale), int(30 * scale))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), thickness, cv2.LINE_AA)
    return canvas
