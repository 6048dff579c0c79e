"""Runs the four stages through :class:`s3pot.models.S3POT` (the reference every other backend is
checked against)."""
from __future__ import annotations

import logging

import numpy as np
import torch

from s3pot.core.errors import S3potInputError

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks the first CUDA GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise S3potInputError(f"device {device!r}: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise S3potInputError(f"device {device!r}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise S3potInputError(f"device {device!r}: expected cuda:0..cuda:{torch.cuda.device_count() - 1}, "
                              f"got index {dev.index}")
    if dev.type not in ("cpu", "cuda"):
        raise S3potInputError(f"device {device!r}: expected auto, cpu, cuda or cuda:N, got {device!r}")
    return dev


class TorchBackend:
    """Stage methods of an :class:`~s3pot.models.S3POT` in eval mode, NumPy in and out."""

    name = "torch"

    def __init__(self, model, *, device: str = "auto", default_normalization: str = "sam") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        #: What the model's adapter was trained with, or None (see Pipeline).
        self.trained_context = getattr(model, "trained_context", None)
        self.default_normalization = default_normalization

    @classmethod
    def from_variant(cls, variant: str, *, checkpoint=None, adapter=None, random_weights: bool = False,
                     device: str = "auto", seed: int = 0) -> "TorchBackend":
        from s3pot.models import build_s3pot, get_variant
        resolve_device(device)  # a bad device fails before a large checkpoint is read
        model = build_s3pot(variant, checkpoint=checkpoint, adapter=adapter,
                            random_weights=random_weights, seed=seed)
        return cls(model, device=device, default_normalization=get_variant(variant).normalization)

    def describe(self) -> str:
        return f"torch {torch.__version__} on {self.device}"

    def _run(self, fn, *arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
            return fn(*tensors).float().cpu().numpy()

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(self.model.encode, pixels)

    def enhance(self, embeddings: np.ndarray, point: np.ndarray) -> np.ndarray:
        return self._run(self.model.enhance, embeddings, point)

    def reweight(self, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self._run(self.model.reweight, points, labels)

    def decode(self, embeddings: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        return self._run(self.model.decode, embeddings, prompts)
