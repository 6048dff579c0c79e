"""Per-image fitting: the SA layer fitted to one test image, the paper's second mode.

Each epoch is one step on the image (AdamW, cosine decay over the epochs). The run stops early
once ``patience`` epochs in a row fail to lower the loss by ``min_delta`` below its best (the
authors: 5 and 1e-4). The weights kept are those of the best loss, the last step's included.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch

from s3pot.core.errors import S3potError
from s3pot.models.losses import ALPHA, LAMBDA

from .options import check_settings
from .steps import SamplePrompts, make_trainable, sample_loss


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 100
    patience: int = 5
    min_delta: float = 1e-4
    lr: float = 1e-4
    weight_decay: float = 0.01
    alpha: float = ALPHA
    lam: float = LAMBDA

    def check(self) -> "FitConfig":
        check_settings(self, (
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("patience", self.patience >= 1, "an integer >= 1"),
            ("min-delta", math.isfinite(self.min_delta) and self.min_delta >= 0, "a number >= 0")))
        return self


@dataclass
class FitResult:
    """One fit. ``losses[k]``: the loss terms after ``k`` steps (``losses[0]``: the starting
    weights); ``best_step``: the steps taken by the weights kept."""

    losses: list[dict] = field(default_factory=list)
    best_step: int = 0
    best_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.losses) - 1

    def as_dict(self) -> dict:
        return {"steps": self.steps, "best_step": self.best_step, "best_loss": self.best_loss,
                "stopped_early": self.stopped_early, "seconds": self.seconds,
                "losses": self.losses}


def fit_image(model, embedding: torch.Tensor, prompts: SamplePrompts, config: FitConfig,
              progress=None) -> FitResult:
    """Fit ``model``'s SA layer (in place) to one image and leave the best weights in it.

    Each epoch takes one step; the loss is taken before every step and once after the last, so
    every weight state can be the one kept. The fit stops once ``patience`` losses in a row fail
    to come ``min_delta`` below the best.

    Args:
        embedding: the image's ``256 x 64 x 64`` embedding on the model's device.
        prompts: its prompts (:func:`~.steps.sample_prompts`).
        progress: called with ``(step, loss)`` after each step's loss is known.
    """
    config.check()
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(make_trainable(model), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    result = FitResult()
    best_state, waited = None, 0
    for step in range(config.epochs + 1):
        last = step == config.epochs
        optimizer.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(not last):
            terms, _ = sample_loss(model, embedding, prompts, alpha=config.alpha, lam=config.lam)
        result.losses.append(terms.as_floats())
        loss = result.losses[-1]["total"]
        if not math.isfinite(loss):
            raise S3potError(f"step {step}: expected a finite loss, got {loss}: fitting diverged "
                             "(try a smaller --lr)")
        if progress and step:
            progress(step, loss)
        if loss < result.best_loss - config.min_delta:
            result.best_loss, result.best_step, waited = loss, step, 0
            best_state = copy.deepcopy(model.sa.state_dict())  # the weights that gave this loss
        else:
            waited += 1
            if waited >= config.patience:
                result.stopped_early = True
                break
        if last:
            break
        if terms.total.requires_grad:  # both prompt sets empty: nothing to learn
            terms.total.backward()
            optimizer.step()
        scheduler.step()
    model.sa.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    return result
