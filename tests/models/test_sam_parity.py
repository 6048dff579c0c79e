"""Our SAM parts against the official ``segment-anything`` modules, built with random weights and
their state dicts loaded into ours by name. Tolerance: relative L2 error < 1e-5."""
from __future__ import annotations

from functools import partial

import pytest
import torch

import oracle
from helpers import rel_l2
from s3pot.models.image_encoder import ATTENTION_MODES, DEFAULT_ATTENTION, ImageEncoderViT
from s3pot.models.mask_decoder import MaskDecoder
from s3pot.models.prompt_encoder import PromptEncoder
from s3pot.models.registry import VARIANTS
from s3pot.models.transformer import TwoWayTransformer

TOL = 1e-5


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random values everywhere, zero-initialised tables (pos_embed, rel_pos) included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in list(module.parameters()) + list(module.buffers()):
            if p.is_floating_point():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.02 if p.dim() > 1 else 0.1)
                       )


def _official_encoder(args: dict):
    m = oracle.modeling()
    return m.ImageEncoderViT(
        depth=args["depth"], embed_dim=args["embed_dim"], img_size=1024, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=args["num_heads"],
        patch_size=16, qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=args["global_attn_indexes"], window_size=14, out_chans=256)


ENCODER_CASES = {
    "vit_b": VARIANTS["vit_b"].encoder_args,  # full size
    # ViT-L and ViT-H at full width, reduced depth (one windowed and one global block) for CI time.
    "vit_l_depth2": dict(VARIANTS["vit_l"].encoder_args, depth=2, global_attn_indexes=(1,)),
    "vit_h_depth2": dict(VARIANTS["vit_h"].encoder_args, depth=2, global_attn_indexes=(1,)),
    "tiny": VARIANTS["tiny"].encoder_args,
}


#: Every attention form on every case, except full-size ViT-B, which runs the default form only.
ENCODER_PARAMS = [(case, mode) for case in ENCODER_CASES for mode in ATTENTION_MODES
                  if case != "vit_b" or mode == DEFAULT_ATTENTION]


@pytest.mark.parametrize("case, mode", ENCODER_PARAMS)
@torch.no_grad()
def test_image_encoder_matches_official(case, mode):
    """Every way of adding the relative-position bias (SAM's mask, or folded into augmented
    queries and keys) computes the official encoder's function."""
    args = ENCODER_CASES[case]
    ref = _official_encoder(args).eval()
    _randomize(ref, seed=1)
    ours = ImageEncoderViT(**args).eval().set_attention(mode)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    want = ref(x)
    got = ours(x)
    assert got.shape == want.shape == (1, 256, 64, 64)
    assert rel_l2(got, want) < TOL


@torch.no_grad()
def test_prompt_encoder_matches_official():
    ref = oracle.modeling().PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
        mask_in_chans=16).eval()
    _randomize(ref, seed=3)
    ours = PromptEncoder().eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(4)
    points = torch.rand(2, 37, 2, generator=gen) * 1024
    labels = torch.randint(0, 2, (2, 37), generator=gen)
    labels[0, 5] = -1  # an explicit padding label inside the set
    sparse_ref, dense_ref = ref(points=(points, labels), boxes=None, masks=None)
    sparse, dense = ours(points, labels)
    assert sparse.shape == sparse_ref.shape == (2, 38, 256)
    assert rel_l2(sparse, sparse_ref) < TOL
    assert rel_l2(dense, dense_ref) < TOL
    assert rel_l2(ours.get_dense_pe(), ref.get_dense_pe()) < TOL
    masks = torch.randn(2, 1, 256, 256, generator=gen)
    assert rel_l2(ours.embed_masks(masks), ref._embed_masks(masks)) < TOL


@pytest.mark.parametrize("num_points", [1, 300])
@torch.no_grad()
def test_mask_decoder_matches_official(num_points):
    m = oracle.modeling()
    ref = m.MaskDecoder(num_multimask_outputs=3, transformer=m.TwoWayTransformer(
        depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256,
        iou_head_depth=3, iou_head_hidden_dim=256).eval()
    _randomize(ref, seed=5)
    ours = MaskDecoder(transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                     num_heads=8)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(6)
    emb = torch.randn(1, 256, 64, 64, generator=gen)
    pe = torch.randn(1, 256, 64, 64, generator=gen)
    sparse = torch.randn(1, num_points + 1, 256, generator=gen)
    dense = torch.randn(1, 256, 64, 64, generator=gen)
    for multimask in (False, True):
        want_masks, want_iou = ref(emb, pe, sparse, dense, multimask)
        masks, iou = ours(emb, pe, sparse, dense, multimask)
        assert masks.shape == want_masks.shape
        assert rel_l2(masks, want_masks) < TOL
        assert rel_l2(iou, want_iou) < TOL
