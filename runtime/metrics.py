"""Occlusion IoU (SPEC.md, Evaluation): per image, the mean over images, and the pooled IoU (all
intersections over all unions). Used by `s3pot evaluate` and by training's validation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s3pot.core.errors import S3potInputError


@dataclass(frozen=True)
class ImageScore:
    name: str
    iou: float
    intersection: int
    union: int
    predicted: int  # occlusion pixels predicted
    truth: int  # occlusion pixels in the ground truth


def score(name: str, predicted: np.ndarray, truth: np.ndarray) -> ImageScore:
    """IoU of two ``H x W`` boolean occlusion masks of the same size."""
    if predicted.shape != truth.shape:
        raise S3potInputError(f"sample {name!r}: expected the prediction at the ground truth's size "
                              f"{truth.shape}, got {predicted.shape}")
    inter = int(np.logical_and(predicted, truth).sum())
    union = int(np.logical_or(predicted, truth).sum())
    return ImageScore(name=name, iou=1.0 if union == 0 else inter / union, intersection=inter,
                      union=union, predicted=int(predicted.sum()), truth=int(truth.sum()))


def summarize(scores: list[ImageScore], skipped: list[str]) -> dict:
    """Mean IoU over images and pooled IoU; empty ``scores`` is an error (nothing was measured)."""
    if not scores:
        raise S3potInputError("dataset: expected samples with ground truth (NAME_gt.png or a "
                              f"LabelMe .json), got none{' (' + ', '.join(skipped) + ' have none)' if skipped else ''}")
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    return {"images": len(scores), "mean_iou": float(np.mean([s.iou for s in scores])),
            "pooled_iou": 1.0 if union == 0 else inter / union, "skipped": skipped}
