"""A 12-class parsing mask (SPEC labels) drawn from face-mesh landmarks.

Regions are filled polygons of the mesh's contours, painted in order so that inner parts win:
skin (the face oval, forehead to chin), nose (the hull of its bridge, tip and wings), eyebrows,
eyes, lips (the outer lip contour) and mouth (the inner one, the opening between the lips).

Limits: the mesh has no points on the hair, the ears, the neck or glasses, so labels 4 (hair), 7
(ears), 8 (below-face), 10 (eye-glass) and 11 (ear-rings) are never drawn, and the oval stops at
the mesh's hairline, which sits low on a high forehead. The face set (SPEC's F) needs only the
labels drawn here.
"""
from __future__ import annotations

import cv2
import numpy as np

from s3pot.core.spec import PARSING_LABELS

from .mesh import (FACE_OVAL, LEFT_EYE_CONTOUR, LEFT_EYEBROW, LIPS_INNER, LIPS_OUTER, NOSE,
                   RIGHT_EYE_CONTOUR, RIGHT_EYEBROW)

_SHIFT = 4  # fillPoly's fractional bits: vertices at 1/16 pixel
LABEL = {name: PARSING_LABELS.index(name) for name in
         ("background", "skin", "nose", "eyebrows", "eyes", "lip", "mouth")}
#: (label, contours, filled as convex hull), painted in this order.
REGIONS = (
    ("skin", (FACE_OVAL,), False),
    ("nose", (NOSE,), True),
    ("eyebrows", (RIGHT_EYEBROW, LEFT_EYEBROW), False),
    ("eyes", (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR), False),
    ("lip", (LIPS_OUTER,), False),
    ("mouth", (LIPS_INNER,), False),
)
#: The labels this module can draw.
DRAWN_LABELS = tuple(sorted(LABEL[name] for name, _, _ in REGIONS))


def landmark_parsing(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``H x W`` uint8 labels from mesh landmarks ``468 x 2`` given in that frame's pixels
    (``size`` is ``(H, W)``)."""
    labels = np.full(size, LABEL["background"], dtype=np.uint8)
    for name, contours, hull in REGIONS:
        polygons = []
        for contour in contours:
            points = xy[list(contour)].astype(np.float64)
            if hull:
                points = cv2.convexHull(points.astype(np.float32))[:, 0]
            polygons.append(np.round(points * (1 << _SHIFT)).astype(np.int32))
        cv2.fillPoly(labels, polygons, int(LABEL[name]), lineType=cv2.LINE_8, shift=_SHIFT)
    return labels
