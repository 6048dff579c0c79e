"""The four exported stages as modules with fixed tensor signatures.

Each wraps one method of :class:`~.s3pot.S3POT`; the exporter (``s3pot.export``) traces these, the
torch backend calls the same methods, so an exported graph and the reference run the same code.
Arguments follow the order of the stage's inputs in :mod:`s3pot.core.io_table`, which also names
them (and whose docstring gives every shape).
"""
from __future__ import annotations

import torch
from torch import nn

from s3pot.core.io_table import DECODER, ENCODER, FE, SA


class _Stage(nn.Module):
    """A view of one method of an S3POT model.

    It takes the model's train/eval mode: a wrapper left in training mode would, once an exporter
    restores "the original mode" recursively, switch the model's BatchNorm layers (TinyViT) to
    training behaviour.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)


class EncoderStage(_Stage):
    """pixels ``B x 3 x 1024 x 1024`` -> image embeddings ``B x 256 x 64 x 64``."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode(pixels)


class FEStage(_Stage):
    """image embeddings ``B x 256 x 64 x 64``, initial point ``B x 1 x 2`` -> tokens ``B x 4096 x 256``."""

    def forward(self, embeddings: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        return self.model.enhance(embeddings, point)


class SAStage(_Stage):
    """point coords ``1 x N x 2``, labels ``1 x N`` -> sparse prompts ``1 x (N+1) x 256``."""

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model.reweight(points, labels)


class DecoderStage(_Stage):
    """image embeddings ``1 x 256 x 64 x 64``, sparse prompts ``1 x M x 256`` -> logits ``1 x 1 x 256 x 256``."""

    def forward(self, embeddings: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return self.model.decode(embeddings, prompts)


#: IO-table stage name -> the module that computes it.
STAGE_MODULES: dict[str, type[_Stage]] = {
    ENCODER.name: EncoderStage, FE.name: FEStage, SA.name: SAStage, DECODER.name: DecoderStage,
}
