"""MobileSAM's TinyViT encoder: checkpoint names and shapes, output grid, attention paths, ONNX.

The (key, shape) tables below are written from MobileSAM's own source
(``ChaoningZhang/MobileSAM``, ``mobile_sam/modeling/tiny_vit_sam.py`` and ``build_sam.py``,
``build_sam_vit_t``): the ``image_encoder.*`` keys of ``mobile_sam.pt`` with the prefix stripped.
Tolerances: relative L2 1e-5 between attention formulations, 1e-4 between ONNX Runtime and PyTorch.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from s3pot.core.errors import S3potInputError
from s3pot.models.tiny_vit import (MOBILE_SAM_CONFIG, TINY_CONFIG, UNUSED_CHECKPOINT_KEYS,
                                   Attention, TinyViT, TinyViTBlock, attention_bias_index)

IMAGE = 1024
GRID = 64
OUT_CHANS = 256
CHECKPOINT_PREFIX = "image_encoder."
NUM_KEYS = 302  # state-dict keys of MobileSAM's encoder, BatchNorm statistics included

# One entry per module type of the original, shapes for the MobileSAM config.
MOBILE_SAM_KEY_SHAPES = {
    # PatchEmbed: Conv2d_BN(3, 32, 3, 2, 1), GELU, Conv2d_BN(32, 64, 3, 2, 1)
    "patch_embed.seq.0.c.weight": (32, 3, 3, 3),
    "patch_embed.seq.0.bn.weight": (32,),
    "patch_embed.seq.0.bn.bias": (32,),
    "patch_embed.seq.0.bn.running_mean": (32,),
    "patch_embed.seq.0.bn.running_var": (32,),
    "patch_embed.seq.0.bn.num_batches_tracked": (),
    "patch_embed.seq.2.c.weight": (64, 32, 3, 3),
    # ConvLayer: MBConv (1x1 expand x4, 3x3 depthwise, 1x1 project)
    "layers.0.blocks.0.conv1.c.weight": (256, 64, 1, 1),
    "layers.0.blocks.0.conv2.c.weight": (256, 1, 3, 3),
    "layers.0.blocks.1.conv3.c.weight": (64, 256, 1, 1),
    "layers.0.blocks.1.conv3.bn.bias": (64,),
    # PatchMerging 64 -> 128, 128 -> 160, 160 -> 320
    "layers.0.downsample.conv1.c.weight": (128, 64, 1, 1),
    "layers.0.downsample.conv2.c.weight": (128, 1, 3, 3),
    "layers.0.downsample.conv3.c.weight": (128, 128, 1, 1),
    "layers.1.downsample.conv1.c.weight": (160, 128, 1, 1),
    "layers.2.downsample.conv2.c.weight": (320, 1, 3, 3),
    "layers.2.downsample.conv3.bn.running_var": (320,),
    # TinyViTBlock, stage 1 (dim 128, 4 heads, window 7 -> 49 offsets)
    "layers.1.blocks.0.attn.attention_biases": (4, 49),
    "layers.1.blocks.0.attn.norm.weight": (128,),
    "layers.1.blocks.0.attn.norm.bias": (128,),
    "layers.1.blocks.0.attn.qkv.weight": (384, 128),
    "layers.1.blocks.0.attn.qkv.bias": (384,),
    "layers.1.blocks.0.attn.proj.weight": (128, 128),
    "layers.1.blocks.0.attn.proj.bias": (128,),
    "layers.1.blocks.0.mlp.norm.weight": (128,),
    "layers.1.blocks.0.mlp.fc1.weight": (512, 128),
    "layers.1.blocks.0.mlp.fc1.bias": (512,),
    "layers.1.blocks.0.mlp.fc2.weight": (128, 512),
    "layers.1.blocks.0.local_conv.c.weight": (128, 1, 3, 3),
    "layers.1.blocks.1.local_conv.bn.num_batches_tracked": (),
    # stage 2 (dim 160, 5 heads, window 14 -> 196 offsets), six blocks
    "layers.2.blocks.0.attn.attention_biases": (5, 196),
    "layers.2.blocks.5.attn.attention_biases": (5, 196),
    "layers.2.blocks.5.attn.qkv.weight": (480, 160),
    "layers.2.blocks.5.mlp.fc1.weight": (640, 160),
    # stage 3 (dim 320, 10 heads, window 7), no downsample
    "layers.3.blocks.1.attn.attention_biases": (10, 49),
    "layers.3.blocks.1.attn.qkv.weight": (960, 320),
    "layers.3.blocks.1.attn.proj.weight": (320, 320),
    "layers.3.blocks.1.mlp.fc1.weight": (1280, 320),
    "layers.3.blocks.1.mlp.fc2.weight": (320, 1280),
    "layers.3.blocks.1.local_conv.c.weight": (320, 1, 3, 3),
    # unused ImageNet head (num_classes=1000)
    "norm_head.weight": (320,),
    "norm_head.bias": (320,),
    "head.weight": (1000, 320),
    "head.bias": (1000,),
    # SAM neck
    "neck.0.weight": (256, 320, 1, 1),
    "neck.1.weight": (256,),
    "neck.1.bias": (256,),
    "neck.2.weight": (256, 256, 3, 3),
    "neck.3.weight": (256,),
    "neck.3.bias": (256,),
}


def _conv_bn(prefix, out_c, in_per_group, k):
    table = {f"{prefix}.c.weight": (out_c, in_per_group, k, k)}
    for name in ("weight", "bias", "running_mean", "running_var"):
        table[f"{prefix}.bn.{name}"] = (out_c,)
    table[f"{prefix}.bn.num_batches_tracked"] = ()
    return table


def _merging(prefix, dim, out):
    return {**_conv_bn(f"{prefix}.conv1", out, dim, 1), **_conv_bn(f"{prefix}.conv2", out, 1, 3),
            **_conv_bn(f"{prefix}.conv3", out, out, 1)}


def mobile_sam_encoder_table(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2),
                             num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7), mlp_ratio=4,
                             expand=4, num_classes=1000, out_chans=256):
    """Every (key, shape) of the original TinyViT's state dict, enumerated module by module."""
    d0 = embed_dims[0]
    table = {**_conv_bn("patch_embed.seq.0", d0 // 2, 3, 3),
             **_conv_bn("patch_embed.seq.2", d0, d0 // 2, 3)}
    for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}"
            if i == 0:
                hidden = dim * expand
                table.update(_conv_bn(f"{p}.conv1", hidden, dim, 1))
                table.update(_conv_bn(f"{p}.conv2", hidden, 1, 3))
                table.update(_conv_bn(f"{p}.conv3", dim, hidden, 1))
                continue
            table[f"{p}.attn.attention_biases"] = (num_heads[i], window_sizes[i] ** 2)
            table[f"{p}.attn.norm.weight"] = table[f"{p}.attn.norm.bias"] = (dim,)
            table[f"{p}.attn.qkv.weight"], table[f"{p}.attn.qkv.bias"] = (3 * dim, dim), (3 * dim,)
            table[f"{p}.attn.proj.weight"], table[f"{p}.attn.proj.bias"] = (dim, dim), (dim,)
            table[f"{p}.mlp.norm.weight"] = table[f"{p}.mlp.norm.bias"] = (dim,)
            hidden = dim * mlp_ratio
            table[f"{p}.mlp.fc1.weight"], table[f"{p}.mlp.fc1.bias"] = (hidden, dim), (hidden,)
            table[f"{p}.mlp.fc2.weight"], table[f"{p}.mlp.fc2.bias"] = (dim, hidden), (dim,)
            table.update(_conv_bn(f"{p}.local_conv", dim, 1, 3))
        if i < len(embed_dims) - 1:
            table.update(_merging(f"layers.{i}.downsample", dim, embed_dims[i + 1]))
    last = embed_dims[-1]
    table["norm_head.weight"] = table["norm_head.bias"] = (last,)
    table["head.weight"], table["head.bias"] = (num_classes, last), (num_classes,)
    table["neck.0.weight"] = (out_chans, last, 1, 1)
    table["neck.1.weight"] = table["neck.1.bias"] = (out_chans,)
    table["neck.2.weight"] = (out_chans, out_chans, 3, 3)
    table["neck.3.weight"] = table["neck.3.bias"] = (out_chans,)
    return table


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _randomize(module, seed):
    """Random values everywhere (the default init zeroes some BN scales and all attention biases,
    which would hide bugs); BN variances kept positive."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.2)
    return module


def _rel_l2(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return _randomize(TinyViT(**TINY_CONFIG), seed=1).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(2))


# --- checkpoint names and shapes -------------------------------------------------------------

def test_literal_table_is_part_of_enumerated_table():
    table = mobile_sam_encoder_table()
    assert len(table) == NUM_KEYS
    assert {k: table[k] for k in MOBILE_SAM_KEY_SHAPES} == MOBILE_SAM_KEY_SHAPES


def test_state_dict_matches_mobile_sam_checkpoint_keys():
    shapes = _shapes(TinyViT())
    assert len(shapes) == NUM_KEYS
    assert {k: shapes.get(k) for k in MOBILE_SAM_KEY_SHAPES} == MOBILE_SAM_KEY_SHAPES
    assert shapes == mobile_sam_encoder_table()
    # Non-persistent in the original too, so absent from mobile_sam.pt.
    assert not [k for k in shapes if "attention_bias_idxs" in k or k.endswith(".ab")]
    assert set(UNUSED_CHECKPOINT_KEYS) <= set(shapes)


def test_tiny_state_dict_follows_the_same_layout():
    assert _shapes(TinyViT(**TINY_CONFIG)) == mobile_sam_encoder_table(**TINY_CONFIG)


def test_strict_load_of_synthetic_checkpoint():
    gen = torch.Generator().manual_seed(3)
    checkpoint = {}
    for key, shape in mobile_sam_encoder_table().items():
        if key.endswith("num_batches_tracked"):
            value = torch.tensor(7)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=gen) + 0.5
        else:
            value = torch.randn(shape, generator=gen)
        checkpoint[CHECKPOINT_PREFIX + key] = value
    checkpoint["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.zeros(2, 128)

    encoder_sd = {k[len(CHECKPOINT_PREFIX):]: v for k, v in checkpoint.items()
                  if k.startswith(CHECKPOINT_PREFIX)}
    model = TinyViT()
    result = model.load_state_dict(encoder_sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    attn = model.layers[2].blocks[5].attn
    loaded = encoder_sd["layers.2.blocks.5.attn.attention_biases"]
    assert torch.equal(attn.attention_biases, loaded)
    # The bias table reads the loaded parameters (offset (0, 0) sits on the diagonal).
    assert torch.equal(attn.bias()[:, 0, 0], loaded[:, 0])


# --- output grid and determinism -------------------------------------------------------------

def test_full_config_output_shape(image):
    model = TinyViT(**MOBILE_SAM_CONFIG).eval()
    with torch.no_grad():
        out = model(image)
    assert out.shape == (1, OUT_CHANS, GRID, GRID)
    assert torch.isfinite(out).all()


def test_tiny_config_output_shape_and_determinism(tiny, image):
    with torch.no_grad():
        first, second = tiny(image), tiny(image)
    assert first.shape == (1, OUT_CHANS, GRID, GRID)
    assert torch.equal(first, second)


def test_tiny_batch_of_two_matches_single_images(tiny, image):
    pair = torch.cat([image, image.flip(-1)])  # 2 x 3 x 1024 x 1024
    with torch.no_grad():
        both = tiny(pair)
        alone = tiny(pair[1:])
    assert _rel_l2(both[1:], alone) < 1e-5


def test_stage_resolutions_keep_the_64_grid():
    model = TinyViT(**TINY_CONFIG)
    assert [layer.resolution for layer in model.layers[1:]] == [128, 64, 64]
    assert model.layers[2].downsample.conv2.c.stride == (1, 1)  # into the last stage
    assert model.layers[1].downsample.conv2.c.stride == (2, 2)
    assert model.grid_size == GRID


def test_wrong_input_shape_is_a_clear_error(tiny):
    with pytest.raises(S3potInputError, match="expected B x 3 x 1024 x 1024, got 1 x 3 x 512 x 512"):
        tiny(torch.zeros(1, 3, 512, 512))


def test_bad_config_is_a_clear_error():
    with pytest.raises(S3potInputError, match="num_heads"):
        TinyViT(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1), num_heads=(1, 3, 2, 4),
                window_sizes=(7, 7, 14, 7))


# --- attention --------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [1, 3, 7, 14])
def test_bias_index_follows_first_seen_offset_order(window):
    """The original numbers offsets |dy|, |dx| in the order it first meets them."""
    points = list(itertools.product(range(window), range(window)))
    offsets, idxs = {}, []
    for p1, p2 in itertools.product(points, points):
        offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
        idxs.append(offsets.setdefault(offset, len(offsets)))
    expected = torch.tensor(idxs).view(len(points), len(points))
    assert torch.equal(attention_bias_index(window), expected)


def _explicit_attention(attn, x):
    """softmax(q k^T * scale + bias) v with the checkpoint's per-head [q | k | v] layout."""
    b, n, _ = x.shape
    heads, hd = attn.num_heads, attn.head_dim
    qkv = attn.qkv(attn.norm(x)).view(b, n, heads, 3 * hd)
    q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split(hd, dim=3))  # b x heads x n x hd
    bias = attn.attention_biases[:, attn.attention_bias_idxs]  # heads x n x n
    weights = torch.softmax(q @ k.transpose(-2, -1) * hd ** -0.5 + bias, dim=-1)
    out = (weights @ v).permute(0, 2, 1, 3).reshape(b, n, heads * hd)
    return attn.proj(out)


@pytest.mark.parametrize("dim,heads,window", [(32, 2, 7), (40, 2, 14), (64, 4, 7)])
def test_sdpa_matches_explicit_attention(dim, heads, window):
    torch.manual_seed(4)
    attn = _randomize(Attention(dim=dim, num_heads=heads, window_size=window), seed=5)
    x = torch.randn(6, window * window, dim)
    with torch.no_grad():
        assert _rel_l2(attn(x), _explicit_attention(attn, x)) < 1e-5


def _loop_window_attention(block, x):
    """Reference: zero-pad the map, run attention window by window, crop."""
    b, _, c = x.shape
    r, w, p = block.resolution, block.window_size, block.padded
    grid = torch.zeros(b, p, p, c)
    grid[:, :r, :r] = x.view(b, r, r, c)
    out = torch.zeros_like(grid)
    for top in range(0, p, w):
        for left in range(0, p, w):
            window = grid[:, top:top + w, left:left + w].reshape(b, w * w, c)
            out[:, top:top + w, left:left + w] = block.attn(window).view(b, w, w, c)
    return out[:, :r, :r].reshape(b, r * r, c)


@pytest.mark.parametrize("resolution,window", [(64, 14), (64, 7), (128, 7), (28, 14), (14, 14)])
def test_window_partition_matches_loop_reference(resolution, window):
    torch.manual_seed(6)
    block = TinyViTBlock(dim=16, resolution=resolution, num_heads=2, window_size=window,
                         mlp_ratio=4.0, local_conv_size=3)
    _randomize(block, seed=7).eval()
    x = torch.randn(2, resolution * resolution, 16)
    with torch.no_grad():
        assert _rel_l2(block.window_attention(x), _loop_window_attention(block, x)) < 1e-5


# --- ONNX -------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
@pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1")  # the pad amounts' Slice
def test_onnx_export_matches_pytorch(tiny, image, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "tiny_vit.onnx"
    # The TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency.
    torch.onnx.export(tiny, (image,), str(path), opset_version=17, dynamo=False,
                      input_names=["image"], output_names=["embeddings"])
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    # Neck (2) plus attention and MLP norms (2 per TinyViT block); no decomposed norm left.
    num_blocks = sum(TINY_CONFIG["depths"][1:])
    assert ops.count("LayerNormalization") == 2 + 2 * num_blocks
    assert "ReduceMean" not in ops

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        want = tiny(image)
    assert got.shape == (1, OUT_CHANS, GRID, GRID)
    assert _rel_l2(torch.from_numpy(got), want) < 1e-4
