"""What standard training and per-image fitting share: the model made trainable, one sample's
prompts, and one sample's objective.

Only the SA layer trains. SAM's parts stay frozen, and so does FE. Its output reaches the loss
only through the greedy matching, a discrete choice of tokens, so the paper's objectives give FE
no gradient (``tests/training/test_steps.py`` checks this). Because FE is frozen, a sample's
prompts do not change while SA trains. They are chosen once per sample, by the runtime's own
stages 2-4 (:func:`s3pot.runtime.pipeline.choose_prompts`, the fast CPU kernel by default), and
each step after that runs only SA and the decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from s3pot.core.spec import prompt_points
from s3pot.models.losses import ALPHA, LAMBDA, LossTerms, prompt_loss
from s3pot.runtime.backends.base import ModelContext
from s3pot.runtime.pipeline import choose_prompts


@dataclass(frozen=True)
class SamplePrompts:
    """One sample's prompts (SPEC stages 2-5), fixed while SA trains."""

    initial_token: int
    occlusion_tokens: np.ndarray  # P_O, raster order
    face_tokens: np.ndarray  # P_N, raster order
    points: np.ndarray  # N x 2 float32 (x, y), occlusion prompts first
    labels: np.ndarray  # N float32: 1 occlusion, 0 face


def make_trainable(model) -> list[torch.nn.Parameter]:
    """Freeze every parameter of ``model`` except the SA layer's; returns those. The model stays
    in eval mode (SA has no dropout; TinyViT's BatchNorm must keep its running statistics)."""
    model.requires_grad_(False)
    model.sa.requires_grad_(True)
    model.eval()
    return list(model.sa.parameters())


def carries_fe(model) -> bool:
    """Whether an adapter of ``model`` must carry FE weights: FE is frozen, but an adapter it
    started from may have brought fine-tuned ones, and the prompts SA learns from are FE's."""
    return not model.fe.matches_mask_decoder(model.mask_decoder)


def torch_runner(model, device: torch.device, variant: str, normalization: str):
    """An activated FP32 :class:`~s3pot.runtime.backends.torch.runner.TorchRunner` over ``model``
    (it runs FE for the prompts and, after training, the runtime's stages for the masks)."""
    from s3pot.runtime.backends.torch.runner import TorchRunner

    runner = TorchRunner(model, ModelContext(variant=variant, normalization=normalization,
                                             trained=model.trained_context),
                         device=str(device), cuda_graphs=False)
    runner.activate()
    return runner


def sample_prompts(runner, embeddings: np.ndarray, face_mask: np.ndarray,
                   selector: str = "auto") -> SamplePrompts:
    """Stages 2-5 of one sample from its ``2 x 256 x 64 x 64`` embeddings (``Z``, ``Z_r``)."""
    token, selection = choose_prompts(runner, embeddings, face_mask, selector)
    points, labels = prompt_points(selection.occlusion, selection.face)
    return SamplePrompts(initial_token=token, occlusion_tokens=selection.occlusion,
                         face_tokens=selection.face, points=points, labels=labels)


def sample_loss(model, embedding: torch.Tensor, prompts: SamplePrompts, *, alpha: float = ALPHA,
                lam: float = LAMBDA) -> tuple[LossTerms, torch.Tensor]:
    """SA and the decoder on one sample, and the objective of their logits.

    Args:
        embedding: the image's ``256 x 64 x 64`` embedding ``Z`` on the model's device.
    Returns:
        the loss terms and the ``1 x 1 x 256 x 256`` logits (both differentiable in SA).
    """
    device = embedding.device
    points = torch.from_numpy(prompts.points).to(device)  # N x 2
    labels = torch.from_numpy(prompts.labels).to(device)  # N
    sparse = model.reweight(points[None], labels[None])  # 1 x (N + 1) x 256
    logits = model.decode(embedding[None], sparse)  # 1 x 1 x 256 x 256
    return prompt_loss(logits, points, labels, alpha=alpha, lam=lam), logits
