"""Encoder outputs kept on disk, so that training runs the frozen encoder once per image.

The encoder is about 94% of a sample's time and it does not train, so its output for an image
never changes while its weights do not. Each entry is one image's ``256 x 64 x 64`` float32
embedding in a ``.npy`` file named by a SHA-256 of

- the encoder's fingerprint: the variant's name and every tensor of the encoder's state dict
  (names, shapes, dtypes, bytes), so other weights or another variant never hit, and
- the image's normalised ``3 x 1024 x 1024`` pixels, so a changed image (or another
  normalisation, or another resize) never hits either.

Entries are written atomically (a stopped run leaves no half-written file) and read with
``allow_pickle=False``; one that cannot be read or has another shape is recomputed, with a
warning. The folder can be shared between runs and deleted at any time.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from s3pot.core.spec import GRID_SIZE, PROMPT_DIM
from s3pot.runtime.io import save_npy

log = logging.getLogger(__name__)

EMBEDDING_SHAPE = (PROMPT_DIM, GRID_SIZE, GRID_SIZE)  # 256 x 64 x 64


def encoder_fingerprint(model, variant: str) -> str:
    """SHA-256 of the variant's name and the encoder's weights (what its output depends on)."""
    digest = hashlib.sha256(variant.encode())
    for name, tensor in model.image_encoder.state_dict().items():
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(array.shape)}|{array.dtype}".encode())
        digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class CacheStats:
    """What the cache did: images the encoder ran on, and images served from disk."""

    encoded: int = 0
    hits: int = 0
    recomputed: int = 0  # unreadable or malformed entries replaced


class EmbeddingCache:
    """The embeddings of one encoder (``model``'s, on ``device``) under ``root``.

    Args:
        root: the cache folder (created on first write); None keeps nothing (every image is
            encoded, and counted).
        model: an :class:`~s3pot.models.S3POT`; only its image encoder runs here, in eval mode
            and without gradients.
        variant: the model's variant name (part of every key).
        device: where the encoder runs (a ``torch.device``).
    """

    def __init__(self, root, model, variant: str, device: torch.device) -> None:
        self.root = None if root is None else Path(root)
        self.model = model
        self.device = device
        self.fingerprint = encoder_fingerprint(model, variant)
        self.stats = CacheStats()

    def key(self, pixels: np.ndarray) -> str:
        """The entry name of one image's normalised pixels (``3 x 1024 x 1024`` float32)."""
        digest = hashlib.sha256(self.fingerprint.encode())
        digest.update(np.ascontiguousarray(pixels, dtype=np.float32).data)
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The stored embedding of ``key``, or None when there is none (or a bad one)."""
        if self.root is None:
            return None
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            log.warning("embedding cache: %s is unreadable (%s); recomputing it", path, exc)
            self.stats.recomputed += 1
            return None
        if array.shape != EMBEDDING_SHAPE or array.dtype != np.float32:
            log.warning("embedding cache: %s holds %s %s, expected %s float32; recomputing it",
                        path, array.shape, array.dtype, EMBEDDING_SHAPE)
            self.stats.recomputed += 1
            return None
        return array

    def fetch(self, images: list[np.ndarray], keys: list[str] | None = None) -> list[np.ndarray]:
        """Embeddings (``256 x 64 x 64`` float32 each) of normalised images (``3 x 1024 x 1024``
        each): read from disk where present, else encoded and stored. The encoder takes one image
        at a time, so an entry does not depend on which images shared its batch (on a GPU a batch
        of two rounds differently from two batches of one). ``keys``: the images' :meth:`key`
        where the caller has them already."""
        keys = keys or [self.key(pixels) for pixels in images]
        found: dict[str, np.ndarray | None] = {key: self.load(key) for key in dict.fromkeys(keys)}
        self.stats.hits += sum(1 for key in keys if found[key] is not None)
        missing = [key for key, value in found.items() if value is None]
        for key in missing:
            pixels = images[keys.index(key)][None]  # 1 x 3 x 1024 x 1024
            with torch.inference_mode():
                embedding = self.model.encode(torch.from_numpy(pixels).to(self.device))[0]
            found[key] = embedding.float().cpu().numpy()
            self._store(key, found[key])
            self.stats.encoded += 1
        return [found[key] for key in keys]

    def _store(self, key: str, embedding: np.ndarray) -> None:
        if self.root is None:
            return
        save_npy(self.path(key), embedding.astype(np.float32, copy=False))
