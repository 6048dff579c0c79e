"""MobileSAM's TinyViT-5M image encoder with its SAM neck, written for export.

MobileSAM (``mobile_sam.pt``) swaps SAM's ViT for a TinyViT distilled from ViT-H and keeps ViT-H's
prompt encoder and mask decoder. This module reproduces MobileSAM's ``TinyViT``
(``mobile_sam/modeling/tiny_vit_sam.py``) parameter for parameter: the checkpoint's
``image_encoder.*`` keys, prefix stripped, are exactly ``TinyViT().state_dict()``'s keys with the
same shapes (302 keys for the MobileSAM config, BatchNorm running statistics included).

Data flow for the MobileSAM config and a ``B x 3 x 1024 x 1024`` input::

    patch_embed   two 3x3 stride-2 Conv-BN          B x  64 x 256 x 256
    layers.0      2 MBConv blocks, merge stride 2    B x 128 x 128 x 128
    layers.1      2 TinyViT blocks (window 7),  /2   B x 160 x  64 x  64
    layers.2      6 TinyViT blocks (window 14), /1   B x 320 x  64 x  64
    layers.3      2 TinyViT blocks (window 7)        B x 320 x  64 x  64
    neck          1x1 conv, LN2d, 3x3 conv, LN2d     B x 256 x  64 x  64

Differences from the original, none of which changes the function computed in eval mode:

- The original decides the stride of a patch merging from its output width (stride 1 when
  ``out_dim`` is 320, 448 or 576, i.e. the last stage of every TinyViT variant). Here the merging
  into the last stage has stride 1 whatever its width, so smaller test configs keep the 64x64 grid.
- Window padding amounts, window counts and stage resolutions are Python ints fixed at
  construction (static shapes for ONNX / TensorRT); attention runs through
  ``scaled_dot_product_attention`` with the relative-position bias table as a float mask.
- No drop path, dropout or gradient checkpointing: the module is for inference.
- ``norm_head`` and ``head`` (the ImageNet classifier TinyViT was pretrained with) are kept as
  parameters so that the checkpoint loads strictly; ``forward`` never uses them
  (see :data:`UNUSED_CHECKPOINT_KEYS`).
- The bias index table ``attention_bias_idxs`` is a non-persistent buffer, as in the original, so it
  is not in the state dict; the original's eval-time cache ``ab`` is not kept.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import IMAGE_SIZE, PROMPT_DIM

from .common import LayerNorm2d
from .registry import MOBILE_SAM_CONFIG, TINY_CONFIG  # noqa: F401 (re-exported)

#: Checkpoint keys of the ImageNet classifier head (``num_classes=1000``): loaded, never used.
UNUSED_CHECKPOINT_KEYS = ("norm_head.weight", "norm_head.bias", "head.weight", "head.bias")

PATCH_EMBED_STRIDE = 4  # two stride-2 convolutions


class Conv2dBN(nn.Module):
    """Convolution without bias followed by BatchNorm (keys ``c.*``, ``bn.*``)."""

    def __init__(self, in_chans: int, out_chans: int, *, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2,
                           groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x C_in x H x W`` to ``B x C_out x H' x W'``."""
        return self.bn(self.c(x))


class PatchEmbed(nn.Module):
    """Two 3x3 stride-2 Conv-BN with GELU between: ``B x C x H x W`` to ``B x D x H/4 x W/4``."""

    def __init__(self, *, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, kernel_size=3, stride=2),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU.

    ``B x C x H x W`` in and out.
    """

    def __init__(self, *, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, kernel_size=3, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        return self.act3(x + self.conv3(y))


class PatchMerging(nn.Module):
    """1x1 Conv-BN, GELU, 3x3 depthwise Conv-BN (stride ``stride``), GELU, 1x1 Conv-BN.

    ``B x C x H x W`` to ``B x C_out x H/stride x W/stride``.
    """

    def __init__(self, *, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, kernel_size=3, stride=stride, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks then an optional patch merging. ``B x C x H x W`` in and out."""

    def __init__(self, *, dim: int, depth: int, expand_ratio: float,
                 downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim=dim, expand_ratio=expand_ratio)
                                    for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


def attention_bias_index(window_size: int) -> torch.Tensor:
    """Index into a ``heads x window_size**2`` bias table for every pair of window positions.

    Returns ``N x N`` int64 with ``N = window_size**2`` (positions in raster order). Pair
    ``(y1, x1), (y2, x2)`` reads entry ``|y1 - y2| * window_size + |x1 - x2|``: the order in which
    the original enumerates offsets (first seen, scanning pairs in raster order), since the pairs
    of position (0, 0) already meet every offset, in raster order.
    """
    pos = torch.arange(window_size)
    ys = pos.repeat_interleave(window_size)  # N
    xs = pos.repeat(window_size)  # N
    dy = (ys[:, None] - ys[None, :]).abs()  # N x N
    dx = (xs[:, None] - xs[None, :]).abs()  # N x N
    return dy * window_size + dx


class Attention(nn.Module):
    """Pre-norm multi-head self-attention inside one window, with a learned bias per head and
    relative offset (LeViT style).

    ``B' x N x C`` in and out, ``B'`` = batch x windows, ``N = window_size**2``. The ``qkv``
    projection's output is laid out per head as ``[q | k | v]`` (``heads x 3 x head_dim``), which
    is how the checkpoint's weights are ordered.
    """

    def __init__(self, *, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.num_tokens = window_size * window_size
        self.scale = self.head_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, self.num_tokens))
        self.register_buffer("attention_bias_idxs", attention_bias_index(window_size),
                             persistent=False)

    def bias(self) -> torch.Tensor:
        """The additive attention bias, ``heads x N x N``."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, heads, hd = self.num_tokens, self.num_heads, self.head_dim
        qkv = self.qkv(self.norm(x)).view(-1, n, heads, 3 * hd)  # B' x N x heads x 3*hd
        qkv = qkv.transpose(1, 2)  # B' x heads x N x 3*hd
        q, k, v = qkv.split(hd, dim=3)  # each B' x heads x N x hd
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias(), scale=self.scale)
        x = x.transpose(1, 2).reshape(-1, n, heads * hd)  # B' x N x C
        return self.proj(x)


class Mlp(nn.Module):
    """Pre-norm MLP: LayerNorm, Linear, GELU, Linear. ``... x C`` in and out."""

    def __init__(self, *, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention, 3x3 depthwise Conv-BN, MLP; ``B x L x C`` tokens in and out
    (``L = H * W`` in raster order).

    Like the original, the map is zero-padded at the bottom and right to a multiple of the window
    and the padded tokens take part in attention unmasked (keys and values); only the real tokens
    are kept afterwards. All pad amounts are fixed by ``resolution`` and ``window_size``.
    """

    def __init__(self, *, dim: int, resolution: int, num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.dim = dim
        self.resolution = resolution
        self.window_size = window_size
        self.pad = (window_size - resolution % window_size) % window_size  # bottom and right
        self.padded = resolution + self.pad
        self.num_windows = self.padded // window_size  # per side
        self.attn = Attention(dim=dim, num_heads=num_heads, window_size=window_size)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, kernel_size=local_conv_size, groups=dim)

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention within non-overlapping windows: ``B x L x C`` in and out."""
        r, p, w, nw, c = self.resolution, self.padded, self.window_size, self.num_windows, self.dim
        if r == w:  # one window covers the map
            return self.attn(x)
        x = x.view(-1, r, r, c)  # B x H x W x C
        if self.pad:
            x = F.pad(x, (0, 0, 0, self.pad, 0, self.pad))  # B x P x P x C
        x = x.view(-1, nw, w, nw, w, c).transpose(2, 3)  # B x nw x nw x w x w x C
        x = self.attn(x.reshape(-1, w * w, c))  # (B * nw * nw) x w*w x C
        x = x.view(-1, nw, nw, w, w, c).transpose(2, 3).reshape(-1, p, p, c)  # B x P x P x C
        if self.pad:
            x = x[:, :r, :r]  # B x H x W x C
        return x.reshape(-1, r * r, c)  # B x L x C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, c = self.resolution, self.dim
        x = x + self.window_attention(x)
        x = x.transpose(1, 2).reshape(-1, c, r, r)  # B x C x H x W
        x = self.local_conv(x).reshape(-1, c, r * r).transpose(1, 2)  # B x L x C
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Stages 1+: TinyViT blocks then an optional patch merging. ``B x C x H x W`` in and out."""

    def __init__(self, *, dim: int, resolution: int, depth: int, num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int,
                 downsample: PatchMerging | None) -> None:
        super().__init__()
        self.dim = dim
        self.resolution = resolution
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim=dim, resolution=resolution, num_heads=num_heads,
                         window_size=window_size, mlp_ratio=mlp_ratio,
                         local_conv_size=local_conv_size)
            for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, c = self.resolution, self.dim
        x = x.reshape(-1, c, r * r).transpose(1, 2)  # B x L x C
        for block in self.blocks:
            x = block(x)
        x = x.transpose(1, 2).reshape(-1, c, r, r)  # B x C x H x W
        return x if self.downsample is None else self.downsample(x)


def _check_config(img_size: int, embed_dims: Sequence[int], depths: Sequence[int],
                  num_heads: Sequence[int], window_sizes: Sequence[int],
                  local_conv_size: int) -> None:
    lengths = {"embed_dims": len(embed_dims), "depths": len(depths),
               "num_heads": len(num_heads), "window_sizes": len(window_sizes)}
    if len(set(lengths.values())) != 1 or len(embed_dims) < 2:
        raise S3potInputError(
            f"TinyViT config: expected embed_dims, depths, num_heads, window_sizes of one length "
            f">= 2 (one entry per stage), got lengths {lengths}")
    reduction = PATCH_EMBED_STRIDE * 2 ** (len(embed_dims) - 2)
    if img_size % reduction:
        raise S3potInputError(
            f"TinyViT img_size: expected a multiple of {reduction} for {len(embed_dims)} stages, "
            f"got {img_size}")
    for i in range(1, len(embed_dims)):
        if embed_dims[i] % num_heads[i] or window_sizes[i] < 1:
            raise S3potInputError(
                f"TinyViT stage {i}: expected embed_dim divisible by num_heads and window_size "
                f">= 1, got embed_dim={embed_dims[i]}, num_heads={num_heads[i]}, "
                f"window_size={window_sizes[i]}")
    if local_conv_size % 2 != 1:
        raise S3potInputError(f"TinyViT local_conv_size: expected an odd size, got {local_conv_size}")


class TinyViT(nn.Module):
    """MobileSAM's image encoder: ``B x in_chans x img_size x img_size`` normalised pixels to
    ``B x out_chans x G x G`` embeddings, ``G = img_size / 16`` (64 for MobileSAM).

    Stage ``i`` runs at ``img_size / 4 / 2**min(i, S - 2)`` (``S`` stages): stage 0 is MBConv,
    the others TinyViT blocks; every stage but the last ends in a patch merging to the next
    width, with stride 2 except into the last stage (stride 1). ``num_heads[0]`` and
    ``window_sizes[0]`` are unused (stage 0 has no attention), as in the original.

    Args:
        img_size: input side in pixels (square input).
        in_chans: input channels.
        embed_dims, depths, num_heads, window_sizes: per stage.
        mlp_ratio: MLP hidden width over block width.
        mbconv_expand_ratio: MBConv hidden width over block width.
        local_conv_size: kernel of the depthwise conv between attention and MLP.
        out_chans: width of the neck's output (SAM's prompt width).
        num_classes: width of the unused ImageNet head kept for strict loading (1000 in
            ``mobile_sam.pt``; 0 leaves ``head`` out).
    """

    def __init__(self, *, img_size: int = IMAGE_SIZE, in_chans: int = 3,
                 embed_dims: Sequence[int] = MOBILE_SAM_CONFIG["embed_dims"],
                 depths: Sequence[int] = MOBILE_SAM_CONFIG["depths"],
                 num_heads: Sequence[int] = MOBILE_SAM_CONFIG["num_heads"],
                 window_sizes: Sequence[int] = MOBILE_SAM_CONFIG["window_sizes"],
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0,
                 local_conv_size: int = 3, out_chans: int = PROMPT_DIM,
                 num_classes: int = 1000) -> None:
        super().__init__()
        _check_config(img_size, embed_dims, depths, num_heads, window_sizes, local_conv_size)
        num_stages = len(embed_dims)
        patches = img_size // PATCH_EMBED_STRIDE
        resolutions = [patches // 2 ** min(i, num_stages - 2) for i in range(num_stages)]
        self.img_size = img_size
        self.in_chans = in_chans
        self.grid_size = resolutions[-1]
        self.out_chans = out_chans

        self.patch_embed = PatchEmbed(in_chans=in_chans, embed_dim=embed_dims[0])
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            downsample = None
            if i < num_stages - 1:
                downsample = PatchMerging(dim=embed_dims[i], out_dim=embed_dims[i + 1],
                                          stride=resolutions[i] // resolutions[i + 1])
            if i == 0:
                layer = ConvLayer(dim=embed_dims[0], depth=depths[0],
                                  expand_ratio=mbconv_expand_ratio, downsample=downsample)
            else:
                layer = BasicLayer(dim=embed_dims[i], resolution=resolutions[i], depth=depths[i],
                                   num_heads=num_heads[i], window_size=window_sizes[i],
                                   mlp_ratio=mlp_ratio, local_conv_size=local_conv_size,
                                   downsample=downsample)
            self.layers.append(layer)

        # ImageNet classifier of the TinyViT pretraining: in the checkpoint, unused here.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x in_chans x img_size x img_size`` (normalised) to ``B x out_chans x G x G``."""
        expected = (self.in_chans, self.img_size, self.img_size)
        # Under tracing (ONNX export) sizes are traced values; the example input fixes them anyway.
        if not torch.jit.is_tracing() and (x.dim() != 4 or tuple(x.shape[1:]) != expected):
            raise S3potInputError(
                f"TinyViT input: expected B x {' x '.join(map(str, expected))}, "
                f"got {' x '.join(map(str, x.shape))}")
        x = self.patch_embed(x)  # B x D0 x img/4 x img/4
        for layer in self.layers:
            x = layer(x)  # B x C x G x G after the last stage
        return self.neck(x)  # B x out_chans x G x G


def _init_weights(module: nn.Module) -> None:
    """The original's initialisation (truncated-normal linears, unit LayerNorms)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
