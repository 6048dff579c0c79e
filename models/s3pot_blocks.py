"""S3POT's own blocks: feature enhancement (FE, SPEC stage 3) and self-attention re-weighting
(SA, SPEC stage 6)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .mask_decoder import MaskDecoder
from .transformer import Attention, TwoWayTransformer


class FEBlock(nn.Module):
    """Feature enhancement: SAM's two-way transformer run with one point prompt, keeping the
    updated image tokens.

    Its weights are a copy of the mask decoder's transformer and output tokens
    (:meth:`from_mask_decoder`), frozen by default; an adapter may carry fine-tuned ones.
    """

    def __init__(self, *, transformer_dim: int = 256, num_mask_tokens: int = 4) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(embedding_dim=transformer_dim)
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(num_mask_tokens, transformer_dim)

    @classmethod
    def from_mask_decoder(cls, decoder: MaskDecoder) -> "FEBlock":
        block = cls(transformer_dim=decoder.transformer_dim, num_mask_tokens=decoder.num_mask_tokens)
        block.load_from_mask_decoder(decoder)
        return block

    @torch.no_grad()
    def matches_mask_decoder(self, decoder: MaskDecoder) -> bool:
        """Whether this block holds exactly the decoder's weights (no fine-tuned FE)."""
        theirs = decoder.transformer.state_dict()
        return (all(torch.equal(v, theirs[k]) for k, v in self.transformer.state_dict().items())
                and torch.equal(self.iou_token.weight, decoder.iou_token.weight)
                and torch.equal(self.mask_tokens.weight, decoder.mask_tokens.weight))

    @torch.no_grad()
    def load_from_mask_decoder(self, decoder: MaskDecoder) -> None:
        """Copy the decoder's transformer and output tokens into this block."""
        self.transformer.load_state_dict(copy.deepcopy(decoder.transformer.state_dict()))
        self.iou_token.weight.copy_(decoder.iou_token.weight)
        self.mask_tokens.weight.copy_(decoder.mask_tokens.weight)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image_embeddings: ``B x C x 64 x 64`` (``Z`` and ``Z_r`` as one batch).
            image_pe: ``1 x C x 64 x 64``.
            sparse_prompt_embeddings: ``B x 2 x C`` (the initial point and SAM's padding point).
            dense_prompt_embeddings: ``B x C x 64 x 64`` (the no-mask embedding).
        Returns:
            enhanced image tokens ``B x 4096 x C`` (``Z_e``, ``Z_re``), raster order.
        """
        b = image_embeddings.shape[0]
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1)
        _, keys = self.transformer(image_embeddings + dense_prompt_embeddings, image_pe, tokens)
        return keys


class SALayer(nn.Module):
    """``P' = LayerNorm(P + MHA(P, P, P))``: one post-norm self-attention layer over the prompt
    embeddings, no positional encoding across prompts (so the result does not depend on their
    order), no dropout."""

    def __init__(self, *, embed_dim: int = 256, num_heads: int = 4) -> None:
        super().__init__()
        self.attn = Attention(embedding_dim=embed_dim, num_heads=num_heads)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, prompts: torch.Tensor) -> torch.Tensor:
        """``B x N x C`` prompt embeddings to ``B x N x C``."""
        return self.norm(prompts + self.attn(q=prompts, k=prompts, v=prompts))
