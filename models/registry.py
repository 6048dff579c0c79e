"""Variants of S3POT's SAM backbone: per-variant config and one builder.

Each public variant passes only what differs by size (the segment-anything registry's pattern);
unknown names fail loudly and list the valid ones (timm's). The configs are plain Python and
torch is imported only by the builders, so the CLI lists variants on machines that run only
exported graphs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from s3pot.core.errors import S3potInputError


#: MobileSAM's encoder settings (``build_sam_vit_t``); they are also the constructor's defaults.
MOBILE_SAM_CONFIG = dict(
    embed_dims=(64, 128, 160, 320),
    depths=(2, 2, 6, 2),
    num_heads=(2, 4, 5, 10),
    window_sizes=(7, 7, 14, 7),
)
#: A small random-weight config for CPU tests: same 1024 input, same 64x64 output grid, same
#: window sizes (so every padding path runs), one block per stage.
TINY_CONFIG = dict(
    embed_dims=(16, 32, 40, 64),
    depths=(1, 1, 1, 1),
    num_heads=(1, 2, 2, 4),
    window_sizes=(7, 7, 14, 7),
)


@dataclass(frozen=True)
class VariantConfig:
    """What identifies and builds one backbone variant."""

    name: str
    encoder: str  # "vit" or "tiny_vit"
    encoder_args: dict = field(default_factory=dict)
    normalization: str = "sam"  # key of s3pot.core.spec.NORMALIZATIONS
    checkpoint: str | None = None  # official file name
    description: str = ""
    test_only: bool = False


def _vit(embed_dim: int, depth: int, num_heads: int, global_attn_indexes: tuple[int, ...]) -> dict:
    return dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                global_attn_indexes=global_attn_indexes)


VARIANTS: dict[str, VariantConfig] = {v.name: v for v in (
    VariantConfig("vit_b", "vit", _vit(768, 12, 12, (2, 5, 8, 11)),
                  checkpoint="sam_vit_b_01ec64.pth", description="SAM ViT-B (91M encoder)"),
    VariantConfig("vit_l", "vit", _vit(1024, 24, 16, (5, 11, 17, 23)),
                  checkpoint="sam_vit_l_0b3195.pth", description="SAM ViT-L (308M encoder)"),
    VariantConfig("vit_h", "vit", _vit(1280, 32, 16, (7, 15, 23, 31)),
                  checkpoint="sam_vit_h_4b8939.pth", description="SAM ViT-H (632M encoder)"),
    VariantConfig("mobile_sam", "tiny_vit",
                  MOBILE_SAM_CONFIG,
                  checkpoint="mobile_sam.pt",
                  description="MobileSAM: TinyViT-5M encoder distilled from ViT-H (edge GPUs)"),
    # Test variants: real 1024 input, 64 x 64 token grid and full-width prompt path; small encoders.
    VariantConfig("tiny", "vit", _vit(32, 2, 2, (1,)), test_only=True,
                  description="test only: 2-block ViT encoder of width 32"),
    VariantConfig("tiny_mobile", "tiny_vit",
                  TINY_CONFIG,
                  test_only=True, description="test only: 4-stage TinyViT of width 16..64"),
)}


def get_variant(name: str) -> VariantConfig:
    """The config of variant ``name``; an unknown name lists the valid ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise S3potInputError(
            f"variant {name!r}: expected one of {', '.join(VARIANTS)}, got {name!r}") from None


def build_image_encoder(variant: VariantConfig):
    if variant.encoder == "vit":
        from .image_encoder import ImageEncoderViT
        return ImageEncoderViT(**variant.encoder_args)
    from .tiny_vit import TinyViT
    return TinyViT(**variant.encoder_args)


def build_s3pot(name: str, *, checkpoint=None, adapter=None, random_weights: bool = False,
                seed: int = 0):
    """Build variant ``name`` as an :class:`~.s3pot.S3POT` in eval mode.

    Exactly one of ``checkpoint`` (an official SAM / MobileSAM state-dict file) and
    ``random_weights=True`` must be given: a model without either would silently segment with
    random weights. ``adapter`` (SA and optional FE weights, see :mod:`.checkpoint`) is loaded on
    top and must have been trained for the same variant.
    """
    import torch

    from .checkpoint import load_adapter, load_sam_checkpoint
    from .s3pot import S3POT

    variant = get_variant(name)
    if (checkpoint is None) == (not random_weights):
        raise S3potInputError(
            "weights: expected a SAM checkpoint (--checkpoint) or an explicit --random-weights, "
            f"got {'both' if checkpoint is not None else 'neither'}")
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = S3POT(image_encoder=build_image_encoder(variant))
    if random_weights:
        _randomize_zero_inits(model, seed)
    else:
        load_sam_checkpoint(model, checkpoint, variant=name)
    if adapter is not None:
        load_adapter(model, adapter, variant=name)
    return model.eval()


def _randomize_zero_inits(model, seed: int) -> None:
    """Give zero-initialised parameters (positional embeddings, relative positions) random values,
    so a random-weights model exercises every term the way a trained one does."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
        model.fe.load_from_mask_decoder(model.mask_decoder)
