"""The S3POT module: SAM's parts plus FE and SA, and the pipeline of SPEC stages 1-7.

The four exported stages (encoder, FE, SA with prompt encoding folded in, decoder) are methods
here and thin modules in :mod:`.stages`; the initial prompt and greedy prompt selection between
them are NumPy kernels (``s3pot.kernels``), shared with every other backend so that all of them pick
prompts the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from s3pot.kernels import initial_prompt, select_prompts
from s3pot.core.spec import (GRID_SIZE, IMAGE_SIZE, LABEL_POSITIVE, PROMPT_DIM, TOKEN_CENTERS,
                                prompt_points)

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .s3pot_blocks import FEBlock, SALayer
from .transformer import TwoWayTransformer



@dataclass
class S3POTOutput:
    """One sample's result. Token indices are raster-order positions on the 64 x 64 grid."""

    low_res_logits: torch.Tensor  # 1 x 1 x 256 x 256
    initial_token: int
    occlusion_tokens: np.ndarray  # P_O, sorted
    face_tokens: np.ndarray  # P_N, sorted


class S3POT(nn.Module):
    """SAM (image encoder, prompt encoder, mask decoder) with S3POT's FE block and SA layer.

    Parameter names under ``image_encoder.``, ``prompt_encoder.`` and ``mask_decoder.`` are SAM's,
    so an official checkpoint loads into them directly.
    """

    def __init__(self, *, image_encoder: nn.Module, prompt_embed_dim: int = PROMPT_DIM,
                 sa_heads: int = 4) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = PromptEncoder(
            embed_dim=prompt_embed_dim, image_embedding_size=(GRID_SIZE, GRID_SIZE),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE))
        self.mask_decoder = MaskDecoder(
            transformer_dim=prompt_embed_dim,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, num_heads=8,
                                          mlp_dim=2048))
        self.fe = FEBlock.from_mask_decoder(self.mask_decoder)
        self.fe.requires_grad_(False)
        self.sa = SALayer(embed_dim=prompt_embed_dim, num_heads=sa_heads)
        #: What the loaded adapter was trained with (normalization, face_set, source); None
        #: without an adapter. A pipeline runs the model with these.
        self.trained_context: dict | None = None

    def sam_modules(self) -> dict[str, nn.Module]:
        """The parts an official SAM checkpoint fills, by their checkpoint prefix."""
        return {"image_encoder": self.image_encoder, "prompt_encoder": self.prompt_encoder,
                "mask_decoder": self.mask_decoder}

    # -- the four exported stages -----------------------------------------------------------
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stage 1: ``B x 3 x 1024 x 1024`` normalised pixels to ``B x 256 x 64 x 64``."""
        return self.image_encoder(pixels)

    def enhance(self, embeddings: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        """Stage 3 (FE): ``B x 256 x 64 x 64`` embeddings and the initial prompt ``B x 1 x 2``
        (pixel ``(x, y)``, positive) to enhanced tokens ``B x 4096 x 256``."""
        labels = torch.full(point.shape[:2], LABEL_POSITIVE, dtype=torch.int64, device=point.device)
        sparse, dense = self.prompt_encoder(point, labels)
        return self.fe(embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense)

    def reweight(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Stages 5-6: ``B x N x 2`` points and ``B x N`` labels to re-weighted prompt embeddings
        ``B x (N + 1) x 256`` (SAM's padding point included)."""
        sparse = self.prompt_encoder.embed_points(points, labels, pad=True)
        return self.sa(sparse)

    def decode(self, embeddings: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Stage 7: ``B x 256 x 64 x 64`` image embedding and ``B x N x 256`` sparse prompts to
        single-mask low-resolution logits ``B x 1 x 256 x 256``."""
        dense = self.prompt_encoder.no_mask_dense(embeddings.shape[0])
        masks, _ = self.mask_decoder(embeddings, self.prompt_encoder.get_dense_pe(), prompts, dense,
                                     multimask_output=False)
        return masks

    # -- the whole pipeline -------------------------------------------------------------------
    def forward(self, pixels: torch.Tensor, face_mask: np.ndarray, *,
                selector: str = "auto") -> S3POTOutput:
        """SPEC stages 1-7 for one sample.

        Args:
            pixels: ``2 x 3 x 1024 x 1024``: the image, then its reference.
            face_mask: ``64 x 64`` bool token-level face mask ``M_f``.
            selector: prompt-selection kernel backend (``s3pot.kernels.select_prompts``).
        """
        z = self.encode(pixels)  # 2 x 256 x 64 x 64: Z, Z_r
        z_np = z.detach().float().cpu().numpy()
        token = initial_prompt(z_np[0], z_np[1], face_mask)
        point = torch.tensor(TOKEN_CENTERS[token], device=z.device).reshape(1, 1, 2).expand(2, 1, 2)
        enhanced = self.enhance(z, point).detach().float().cpu().numpy()  # 2 x 4096 x 256
        selection = select_prompts(enhanced[0], enhanced[1], face_mask, backend=selector)
        points, labels = prompt_points(selection.occlusion, selection.face)
        prompts = self.reweight(torch.as_tensor(points, device=z.device)[None],
                                torch.as_tensor(labels, device=z.device)[None])
        logits = self.decode(z[:1], prompts)
        return S3POTOutput(low_res_logits=logits, initial_token=int(token),
                           occlusion_tokens=selection.occlusion, face_tokens=selection.face)

