"""SAM's mask decoder, official parameter names."""
from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Image embedding and prompt embeddings to low-resolution mask logits (``4 x`` the grid)."""

    def __init__(self, *, transformer_dim: int = 256, transformer: TwoWayTransformer | None = None,
                 num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer(
            embedding_dim=transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(input_dim=transformer_dim, hidden_dim=transformer_dim,
                output_dim=transformer_dim // 8, num_layers=3)
            for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(input_dim=transformer_dim, hidden_dim=iou_head_hidden_dim,
                                       output_dim=self.num_mask_tokens, num_layers=iou_head_depth)

    def output_tokens(self, batch: int) -> torch.Tensor:
        """IoU token then mask tokens: ``batch x (1 + num_mask_tokens) x C``."""
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        return tokens.unsqueeze(0).expand(batch, -1, -1)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embeddings: ``B x C x 64 x 64`` (one per prompt set; SAM's repeat_interleave over
                several prompt sets per image is not needed here).
            image_pe: ``1 x C x 64 x 64`` dense positional encoding.
            sparse_prompt_embeddings: ``B x N x C``.
            dense_prompt_embeddings: ``B x C x 64 x 64``.
            multimask_output: the three multimask outputs instead of the single one.
        Returns:
            mask logits ``B x M x 256 x 256`` and IoU predictions ``B x M`` (M = 1 or 3).
        """
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou_pred[:, keep]

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` masks: ``B x 4 x 256 x 256`` and ``B x 4``."""
        b, c, h, w = image_embeddings.shape
        tokens = torch.cat([self.output_tokens(b), sparse_prompt_embeddings], dim=1)
        src = image_embeddings + dense_prompt_embeddings
        hs, src = self.transformer(src, image_pe, tokens)
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))  # B x C/8 x 4h x 4w
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        _, c8, uh, uw = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c8, uh * uw)).reshape(b, -1, uh, uw)
        return masks, self.iou_prediction_head(hs[:, 0, :])
