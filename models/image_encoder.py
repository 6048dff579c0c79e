"""SAM's ViT image encoder (ViT-B/L/H) with its neck, written for export.

Parameter names are the official ones (``patch_embed.proj``, ``pos_embed``, ``blocks.N.attn.qkv``,
``blocks.N.attn.rel_pos_h``, ``neck.0`` ...), so official checkpoints load by name. For a static
1024 x 1024 input every shape and pad amount is a Python int fixed at construction, the
relative-position gather indices are constant buffers, and attention runs through
``scaled_dot_product_attention`` with the decomposed relative-position term as a float mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, MLPBlock

#: Ways of adding the relative-position bias, see :meth:`ImageEncoderViT.set_attention`.
ATTENTION_MODES = ("bias", "global", "augmented")
#: The form models are built with and graphs exported in (measured: README, export section).
DEFAULT_ATTENTION = "bias"


class ImageEncoderViT(nn.Module):
    """``B x 3 x img_size x img_size`` normalised pixels to ``B x out_chans x G x G`` embeddings
    (``G = img_size / patch_size``, 64 for SAM)."""

    def __init__(self, *, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, out_chans: int = 256, window_size: int = 14,
                 global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                  window_size=0 if i in global_attn_indexes else window_size, grid_size=grid)
            for i in range(depth))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.set_attention(DEFAULT_ATTENTION)

    def set_attention(self, mode: str) -> "ImageEncoderViT":
        """How attention adds the relative-position bias (same function, up to rounding):

        ``bias``: as SAM, a ``heads x HW x HW`` float mask per image in every block;
        ``global``: the four global blocks fold the bias into augmented queries and keys (no
        4096 x 4096 mask), windowed blocks keep their small 196 x 196 mask;
        ``augmented``: every block folds it.
        """
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention mode {mode!r}: expected one of {', '.join(ATTENTION_MODES)}")
        for block in self.blocks:
            fold = mode == "augmented" or (mode == "global" and block.window_size == 0)
            block.attn.rel_pos_mode = "augmented" if fold else "bias"
        self.attention_mode = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed  # B x G x G x D
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))  # B x out_chans x G x G


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution; output channels-last ``B x G x G x D``."""

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Block(nn.Module):
    """Pre-norm ViT block with windowed (``window_size > 0``) or global attention."""

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float, window_size: int,
                 grid_size: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.grid_size = grid_size
        attn_size = window_size if window_size > 0 else grid_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim=dim, num_heads=num_heads, input_size=attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x H x W x C`` to ``B x H x W x C``. The norms, residuals and MLP run on the
        tokens as ``B x HW x C`` (SAM's function; only the views differ): on the 4-D grid
        OpenVINO's CPU plugin took the layer norms' ``H`` axis for channels and reordered every
        norm's output back (24 reorders of 13 ms per ViT-B image); on the tokens it runs them in
        place: its FP32 encoder took 5.30 s against 5.61 s per image side by side (medians of 5;
        ONNX Runtime 6.97 s against 7.31 s, medians of 3)."""
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)  # B x HW x C
        y = self.norm1(tokens).reshape(b, h, w, c)
        y = self._windowed_attention(y) if self.window_size > 0 else self.attn(y)
        tokens = tokens + y.reshape(b, h * w, c)
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.reshape(b, h, w, c)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        """SAM's windowed attention without the padding's products: SAM pads the 64 x 64 grid
        with zero tokens to 70 x 70 and runs the qkv and output projections on all 4900 tokens.
        A zero token's q, k and v are the qkv bias, and the padded outputs are dropped, so the
        qkv product runs on the 4096 real tokens, the windows are padded with zeros before the
        bias is added (giving the padded tokens exactly the bias), and the output projection
        runs after the padding is dropped: the same function with 16% fewer products in those
        two layers (3% of ViT-B's encoder)."""
        qkv = F.linear(x, self.attn.qkv.weight)  # B x H x W x 3C, no bias yet
        qkv = window_partition(qkv, self.window_size) + self.attn.qkv.bias  # B*nW x w x w x 3C
        x = self.attn.attend(qkv)  # B*nW x w x w x C
        x = window_unpartition(x, self.window_size, self.grid_size)  # B x H x W x C
        return self.attn.proj(x)


def _padded(size: int, window: int) -> int:
    return (size + window - 1) // window * window


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``B x H x W x C`` (H = W, static) to ``B*nW x window x window x C``, zero-padding to a
    multiple of ``window`` (64 -> 70 for SAM's 14)."""
    b, h, w, c = x.shape
    hp, wp = _padded(h, window), _padded(w, window)
    if hp != h or wp != w:
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    x = x.reshape(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_unpartition(windows: torch.Tensor, window: int, size: int) -> torch.Tensor:
    """Inverse of :func:`window_partition` for a ``size x size`` grid, dropping the padding."""
    padded = _padded(size, window)
    n = padded // window
    c = windows.shape[-1]
    x = windows.reshape(-1, n, n, window, window, c).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(-1, padded, padded, c)  # B x Hp x Wp x C
    return x[:, :size, :size, :] if padded != size else x


def _rel_index(size: int) -> torch.Tensor:
    """Index into a ``(2*size-1) x C`` table for every (query, key) pair along one axis."""
    coords = torch.arange(size)
    return coords[:, None] - coords[None, :] + (size - 1)  # size x size


def _key_positions(size: int) -> torch.Tensor:
    """``1 x 1 x size^2 x 2*size``: the one-hot row, then the one-hot column, of every key."""
    eye = torch.eye(size)
    rows = eye.repeat_interleave(size, dim=0)  # size^2 x size: key (kh, kw) -> onehot(kh)
    cols = eye.repeat(size, 1)  # size^2 x size: onehot(kw)
    return torch.cat([rows, cols], dim=1)[None, None]


class Attention(nn.Module):
    """Multi-head attention with decomposed relative positions (MViTv2), SAM's names."""

    def __init__(self, *, dim: int, num_heads: int, input_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size - 1, head_dim))
        # Query and key grids have the same size, so SAM's interpolation never triggers and the
        # gather index is a constant.
        self.register_buffer("rel_index", _rel_index(input_size), persistent=False)
        # One-hot row and column of every key (raster order), for the augmented form.
        self.register_buffer("key_positions", _key_positions(input_size), persistent=False)
        self.scale = head_dim ** -0.5
        self.rel_pos_mode = "bias"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """``B x H x W x 3C`` projected queries, keys and values to ``B x H x W x C`` attention
        outputs (before the output projection)."""
        b, h, w, c3 = qkv.shape
        heads, c = self.num_heads, c3 // 3
        qkv = qkv.reshape(b, h * w, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each B x heads x HW x hd
        if self.rel_pos_mode == "augmented":
            q, k = self._augment(q, k, h, w)  # B x heads x HW x (hd + H + W)
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            bias = self._rel_pos_bias(q, h, w)  # B x heads x HW x HW
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # B x heads x HW x hd
        return x.permute(0, 2, 1, 3).reshape(b, h, w, c)

    def _rel_terms(self, q: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The decomposed relative-position terms of every query: ``q . R_h[qh - kh]`` and
        ``q . R_w[qw - kw]``, shapes ``B x heads x H x W x H(k)`` and ``B x heads x H x W x W(k)``."""
        b, heads, _, hd = q.shape
        rh = self.rel_pos_h[self.rel_index]  # H x H(k) x hd
        rw = self.rel_pos_w[self.rel_index]  # W x W(k) x hd
        r_q = q.reshape(b, heads, h, w, hd)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)
        return rel_h, rel_w

    def _augment(self, q: torch.Tensor, k: torch.Tensor, h: int, w: int):
        """Fold the relative-position bias into the dot product: queries get their ``H + W``
        bias terms appended (divided by the softmax scale), keys the one-hot of their row and
        column, so ``q' . k' * scale = q . k * scale + rel_h[kh] + rel_w[kw]`` and attention is a
        plain scaled dot product with no ``HW x HW`` mask."""
        b, heads, hw, _ = q.shape
        rel_h, rel_w = self._rel_terms(q, h, w)
        q_aug = torch.cat([q, (rel_h / self.scale).reshape(b, heads, hw, h),
                           (rel_w / self.scale).reshape(b, heads, hw, w)], dim=-1)
        k_aug = torch.cat([k, self.key_positions.expand(b, heads, hw, h + w)], dim=-1)
        return q_aug, k_aug

    def _rel_pos_bias(self, q: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, heads, _, _ = q.shape
        rel_h, rel_w = self._rel_terms(q, h, w)
        bias = rel_h[..., :, None] + rel_w[..., None, :]  # B x heads x H x W x Hk x Wk
        return bias.reshape(b, heads, h * w, h * w)
