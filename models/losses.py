"""S3POT's training objectives (SPEC.md, "Training objective"), used by standard training and by
per-image fitting alike.

The mask decoder's logits are upsampled bilinearly to ``IMAGE_SIZE`` (SPEC stage 7) and their
sigmoid ``q`` is read at each prompt's pixel, clamped to ``[PROB_EPS, 1 - PROB_EPS]``:

- OPR, ``L_occ  = -mean(log q)`` over occlusion prompts (they should be inside the mask);
- FPR, ``L_face =  mean(log q)`` over face prompts (they should be outside it);
- FPP, ``L_pen  =  mean(sigmoid(alpha * (q - 0.5)))`` over face prompts (a steep penalty on face
  prompts the mask still covers);
- ``L = L_face + L_occ + lambda * L_pen``. A term whose prompt set is empty is 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import IMAGE_SIZE, LABEL_NEGATIVE, LABEL_POSITIVE, LOW_RES_SIZE

#: The paper's settings: FPP's steepness and FPP's weight in the total.
ALPHA = 10.0
LAMBDA = 0.5
#: Probabilities are clamped to [PROB_EPS, 1 - PROB_EPS] before the logarithm.
PROB_EPS = 1e-6


@dataclass
class LossTerms:
    """The three objectives and their total, each a scalar tensor (0 for an empty prompt set)."""

    occ: torch.Tensor  # OPR, L_occ
    face: torch.Tensor  # FPR, L_face
    pen: torch.Tensor  # FPP, L_pen
    total: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in ("total", "occ", "face", "pen")}


def prompt_probabilities(low_res_logits: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``q``: the mask probability at each prompt's pixel.

    Args:
        low_res_logits: the decoder's ``256 x 256`` logits (leading axes of size 1 allowed).
        points: ``N x 2`` ``(x, y)`` pixel positions in ``IMAGE_SIZE`` space (token centres).
    Returns:
        ``N`` probabilities in ``[PROB_EPS, 1 - PROB_EPS]``, differentiable in the logits.
    """
    if low_res_logits.shape[-2:] != (LOW_RES_SIZE, LOW_RES_SIZE) or \
            low_res_logits.numel() != LOW_RES_SIZE ** 2:
        raise S3potInputError(f"decoder logits: expected {LOW_RES_SIZE} x {LOW_RES_SIZE}, got "
                              f"{tuple(low_res_logits.shape)}")
    pixels = points.reshape(-1, 2).long()  # N x 2, (x, y); token centres are whole pixels
    if len(pixels) and (pixels.min() < 0 or pixels.max() >= IMAGE_SIZE):
        raise S3potInputError(f"prompt points: expected pixels in 0..{IMAGE_SIZE - 1}, got "
                              f"{pixels.min().item()}..{pixels.max().item()}")
    logits = low_res_logits.reshape(1, 1, LOW_RES_SIZE, LOW_RES_SIZE)
    full = F.interpolate(logits, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                         align_corners=False)[0, 0]  # 1024 x 1024
    picked = full[pixels[:, 1].to(full.device), pixels[:, 0].to(full.device)]  # N
    return torch.sigmoid(picked).clamp(PROB_EPS, 1 - PROB_EPS)


def objective(q_occlusion: torch.Tensor, q_face: torch.Tensor, *, alpha: float = ALPHA,
              lam: float = LAMBDA) -> LossTerms:
    """The three terms and ``L = L_face + L_occ + lam * L_pen`` from the probabilities at the
    occlusion prompts (``N_o``) and at the face prompts (``N_f``); an empty set's terms are 0."""
    reference = q_occlusion if q_occlusion.numel() else q_face
    zero = reference.new_zeros(())
    occ = -torch.log(q_occlusion).mean() if q_occlusion.numel() else zero
    face = torch.log(q_face).mean() if q_face.numel() else zero
    pen = torch.sigmoid(alpha * (q_face - 0.5)).mean() if q_face.numel() else zero
    return LossTerms(occ=occ, face=face, pen=pen, total=face + occ + lam * pen)


def prompt_loss(low_res_logits: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, *,
                alpha: float = ALPHA, lam: float = LAMBDA) -> LossTerms:
    """The objective of one sample: ``points`` ``N x 2`` and ``labels`` ``N`` as SPEC stage 5
    gives them (occlusion prompts positive, face prompts negative)."""
    labels = labels.reshape(-1)
    unknown = set(labels.unique().tolist()) - {LABEL_POSITIVE, LABEL_NEGATIVE}
    if unknown:
        raise S3potInputError(f"prompt labels: expected {LABEL_POSITIVE} (occlusion) or "
                              f"{LABEL_NEGATIVE} (face), got {sorted(unknown)}")
    q = prompt_probabilities(low_res_logits, points)
    labels = labels.to(q.device)
    return objective(q[labels == LABEL_POSITIVE], q[labels == LABEL_NEGATIVE], alpha=alpha, lam=lam)
