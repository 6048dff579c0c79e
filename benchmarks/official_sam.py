"""SAM's parts from the official ``segment-anything`` package, as the authors' code runs them.

The S3POT authors build on the official package (their README: "You also need to install Segment
Anything"), so the baseline of ``s3pot bench`` runs SAM's image encoder, prompt encoder, mask
decoder and two-way transformer from it, filled with the weights of the S3POT model under test by
their official names. The tests use the same modules as their parity oracle.

The package's ``__init__`` imports its predictor, which imports torchvision (not installable beside
the CPU torch used here). Only ``segment_anything.modeling`` is needed, so the package is
registered as an empty module that points at the installed folder and ``modeling`` is imported
through it, without running the real ``__init__``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from functools import partial

from s3pot.core.errors import MissingDependencyError
from s3pot.core.spec import GRID_SIZE, IMAGE_SIZE, PATCH_SIZE, PROMPT_DIM

PACKAGE = "segment_anything"
INSTALL_HINT = "pip install segment-anything==1.0 (in the bench extra)"


def _package() -> types.ModuleType:
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"the official segment-anything package is not installed: "
                                   f"{INSTALL_HINT}")
    package = types.ModuleType(PACKAGE)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[PACKAGE] = package
    return package


def modeling() -> types.ModuleType:
    """``segment_anything.modeling`` (ImageEncoderViT, PromptEncoder, MaskDecoder, ...)."""
    _package()
    return importlib.import_module(f"{PACKAGE}.modeling")


def build_sam() -> types.ModuleType:
    """``segment_anything.build_sam`` (sam_model_registry, build_sam_vit_b, ...)."""
    _package()
    return importlib.import_module(f"{PACKAGE}.build_sam")


def official_image_encoder(encoder_args: dict):
    """The official ViT image encoder with one of :data:`s3pot.models.registry.VARIANTS`'
    ``vit`` settings (``build_sam``'s constants for the rest)."""
    import torch

    return modeling().ImageEncoderViT(
        depth=encoder_args["depth"], embed_dim=encoder_args["embed_dim"], img_size=IMAGE_SIZE,
        mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=encoder_args["num_heads"], patch_size=PATCH_SIZE, qkv_bias=True,
        use_rel_pos=True, global_attn_indexes=tuple(encoder_args["global_attn_indexes"]),
        window_size=14, out_chans=PROMPT_DIM)


@dataclass
class OfficialParts:
    """An S3POT model's SAM parts as official modules, with its weights."""

    image_encoder: object  # official ImageEncoderViT, or the model's own TinyViT (see below)
    prompt_encoder: object
    mask_decoder: object
    fe_transformer: object  # the FE block's two-way transformer (its weights may be fine-tuned)
    encoder_source: str  # "segment-anything" or why not


def official_parts(model, variant) -> OfficialParts:
    """The official modules of ``model`` (an :class:`~s3pot.models.S3POT` of ``variant``, a
    :class:`~s3pot.models.registry.VariantConfig`), each loaded strictly from the model's own
    state dict. MobileSAM's TinyViT is not in the official package (nor on PyPI), so TinyViT
    variants keep the model's own encoder, which is checked against MobileSAM's code in the
    tests."""
    m = modeling()
    if variant.encoder == "vit":
        encoder = official_image_encoder(variant.encoder_args)
        encoder.load_state_dict(model.image_encoder.state_dict(), strict=True)
        source = "segment-anything"
    else:
        encoder = model.image_encoder
        source = "s3pot TinyViT (MobileSAM's code is not packaged)"
    prompt_encoder = m.PromptEncoder(
        embed_dim=PROMPT_DIM, image_embedding_size=(GRID_SIZE, GRID_SIZE),
        input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16)
    prompt_encoder.load_state_dict(model.prompt_encoder.state_dict(), strict=True)
    decoder = m.MaskDecoder(
        num_multimask_outputs=3, transformer_dim=PROMPT_DIM, iou_head_depth=3,
        iou_head_hidden_dim=256,
        transformer=m.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048,
                                        num_heads=8))
    decoder.load_state_dict(model.mask_decoder.state_dict(), strict=True)
    fe_transformer = m.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048,
                                         num_heads=8)
    fe_transformer.load_state_dict(model.fe.transformer.state_dict(), strict=True)
    parts = OfficialParts(encoder, prompt_encoder, decoder, fe_transformer, source)
    for module in (encoder, prompt_encoder, decoder, fe_transformer):
        module.eval()
    return parts
