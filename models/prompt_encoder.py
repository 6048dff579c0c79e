"""SAM's prompt encoder, point prompts only, written for export.

Official parameter names (``pe_layer.positional_encoding_gaussian_matrix``, ``point_embeddings.N``,
``not_a_point_embed``, ``mask_downscaling.N``, ``no_mask_embed``). S3POT prompts with points only;
the mask-downscaling layers are kept so that official checkpoints load strictly. Label handling
uses arithmetic masks instead of SAM's in-place boolean indexing, which exports as scatter ops.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from s3pot.core.spec import LABEL_NEGATIVE, LABEL_PAD, LABEL_POSITIVE

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of coordinates through a fixed Gaussian matrix (``2 x num_pos_feats``)."""

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """``... x 2`` coordinates in [0, 1] to ``... x 2*num_pos_feats``."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an ``h x w`` grid of cell centres: ``C x h x w``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # h x w x 2 (x, y)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """``B x N x 2`` pixel coordinates ``(x, y)`` to ``B x N x C``."""
        coords = coords.float()  # (no tensor from a Python list: CUDA graphs capture this)
        coords = torch.cat([coords[..., :1] / image_size[1], coords[..., 1:] / image_size[0]], -1)
        return self._pe_encoding(coords)


class PromptEncoder(nn.Module):
    """Embeds point prompts for SAM's mask decoder."""

    def __init__(self, *, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024), mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # pos/neg point + 2 box corners
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """SAM's dense positional encoding of the token grid: ``1 x C x 64 x 64``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def no_mask_dense(self, batch: int = 1) -> torch.Tensor:
        """The no-mask dense prompt: ``batch x C x 64 x 64``."""
        h, w = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """Point prompts to sparse embeddings.

        Args:
            points: ``B x N x 2`` pixel coordinates ``(x, y)`` in the 1024 x 1024 input frame.
            labels: ``B x N`` with 1 positive, 0 negative, -1 padding.
            pad: append SAM's padding point, as SAM does when no box is given.
        Returns:
            ``B x (N + pad) x C``.
        """
        points = points + 0.5  # centre of the pixel
        labels = labels.to(points.dtype)
        if pad:
            b = points.shape[0]
            points = torch.cat([points, points.new_zeros(b, 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((b, 1), LABEL_PAD)], dim=1)
        pe = self.pe_layer.forward_with_coords(points, self.input_image_size)  # B x N x C
        is_pad = (labels == LABEL_PAD).to(pe.dtype).unsqueeze(-1)
        is_neg = (labels == LABEL_NEGATIVE).to(pe.dtype).unsqueeze(-1)
        is_pos = (labels == LABEL_POSITIVE).to(pe.dtype).unsqueeze(-1)
        return (pe * (1 - is_pad) + is_pad * self.not_a_point_embed.weight
                + is_neg * self.point_embeddings[0].weight + is_pos * self.point_embeddings[1].weight)

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``B x 1 x 256 x 256`` mask logits to a ``B x C x 64 x 64`` dense prompt."""
        return self.mask_downscaling(masks)

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (``B x (N+1) x C``, padding point appended) and no-mask dense embeddings."""
        sparse = self.embed_points(points, labels, pad=True)
        return sparse, self.no_mask_dense(points.shape[0])
