"""Finds and checks what the PyTorch backend runs: a variant built with its weights.

The checkpoint and adapter are loaded by their official parameter names
(:func:`s3pot.models.build_s3pot`); the adapter, when there is one, says what normalisation and face
set the model was trained with.
"""
from __future__ import annotations

from s3pot.core.errors import S3potInputError

from ..base import ModelContext


def load_model(spec):
    """The :class:`~s3pot.models.S3POT` of ``spec`` (variant, checkpoint or random weights, adapter)
    and its :class:`ModelContext`."""
    from s3pot.models import build_s3pot, get_variant

    if spec.folder is not None:
        raise S3potInputError(f"backend torch: expected --variant with --checkpoint (or "
                              f"--random-weights), got an export folder '{spec.folder}'; export "
                              "folders run with --backend onnxruntime or tensorrt")
    name = spec.variant or "vit_b"
    variant = get_variant(name)
    model = build_s3pot(name, checkpoint=spec.checkpoint, adapter=spec.adapter,
                        random_weights=spec.random_weights, seed=spec.seed)
    return model, ModelContext(variant=name, normalization=variant.normalization,
                               trained=model.trained_context)
