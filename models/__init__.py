"""PyTorch definitions of S3POT: SAM's parts written for export, TinyViT, FE, SA, the pipeline
module, the variant registry and checkpoint / adapter loading.

Names are imported on first use (PEP 562), so ``s3pot.models.registry`` (plain Python) can be
read without torch installed; everything else here needs torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "guess_variant": "checkpoint", "load_adapter": "checkpoint", "load_sam_checkpoint": "checkpoint",
    "read_adapter": "checkpoint", "save_adapter": "checkpoint",
    "VARIANTS": "registry", "VariantConfig": "registry", "build_s3pot": "registry",
    "get_variant": "registry",
    "S3POT": "s3pot", "S3POTOutput": "s3pot",
    "STAGE_MODULES": "stages", "DecoderStage": "stages", "EncoderStage": "stages",
    "FEStage": "stages", "SAStage": "stages",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
