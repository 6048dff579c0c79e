"""Resizing, normalisation and post-processing: the contract every backend shares."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s3pot.kernels.errors import NoFaceTokensError, S3potInputError
from s3pot.kernels.spec import NORMALIZATIONS
from s3pot.runtime import preprocess as pp


def test_postprocess_matches_torch_bilinear():
    """cv2 INTER_LINEAR on float32 == F.interpolate(bilinear, align_corners=False), up and down.

    Tolerance 2e-4 absolute on unit-scale logits: OpenCV computes its interpolation weights in
    float32 with its own coordinate arithmetic (measured up to ~9e-5 at non-integer ratios)."""
    low = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    for size in [(1024, 1024), (1137, 910), (240, 320)]:
        full = F.interpolate(torch.from_numpy(low)[None, None], (1024, 1024), mode="bilinear",
                             align_corners=False)
        want = F.interpolate(full, size, mode="bilinear", align_corners=False)[0, 0].numpy()
        got = pp.postprocess_logits(low[None, None], size)
        assert got.shape == size
        assert np.abs(got - want).max() < 2e-4, size
        assert np.mean((got > 0) == (want > 0)) > 0.9999


def test_postprocess_rejects_wrong_logits():
    with pytest.raises(S3potInputError, match="256 x 256"):
        pp.postprocess_logits(np.zeros((1, 3, 256, 256), np.float32), (10, 10))


def test_normalize_uses_the_named_statistics():
    rgb = np.random.default_rng(1).integers(0, 256, (1024, 1024, 3)).astype(np.uint8)
    for name, (mean, std) in NORMALIZATIONS.items():
        x = pp.normalize(rgb, name)
        assert x.shape == (3, 1024, 1024) and x.dtype == np.float32
        ref = (rgb.astype(np.float64) - mean) / std
        assert np.abs(x - ref.transpose(2, 0, 1)).max() < 1e-5
    with pytest.raises(S3potInputError, match="sam"):
        pp.normalize(rgb, "imagenet")


def test_resize_image_to_1024_without_cropping():
    rgb = np.zeros((300, 200, 3), np.uint8)
    rgb[:, :100] = 255  # left half white
    out = pp.resize_image(rgb)
    assert out.shape == (1024, 1024, 3)
    assert out[:, :500].min() == 255 and out[:, 524:].max() == 0  # the split stays in the middle


def test_resize_parsing_keeps_labels():
    labels = np.random.default_rng(2).integers(0, 12, (37, 53)).astype(np.uint8)
    out = pp.resize_parsing(labels)
    assert out.shape == (1024, 1024)
    assert set(np.unique(out)) <= set(np.unique(labels))
    # half-pixel nearest: output pixel i reads source floor((i + 0.5) * in / out)
    ys = np.floor((np.arange(1024) + 0.5) * 37 / 1024).astype(int)
    xs = np.floor((np.arange(1024) + 0.5) * 53 / 1024).astype(int)
    assert np.array_equal(out, labels[ys][:, xs])


def test_prepare_inputs_contract():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (600, 500, 3)).astype(np.uint8)
    reference = rng.integers(0, 256, (300, 250, 3)).astype(np.uint8)  # any size: both resized
    parsing = np.zeros((300, 250), np.uint8)
    parsing[100:200, 80:170] = 6
    prepared = pp.prepare_inputs(image, reference, parsing)
    assert prepared.pixels.shape == (2, 3, 1024, 1024) and prepared.pixels.dtype == np.float32
    assert prepared.face_mask.shape == (64, 64) and prepared.face_mask.dtype == bool
    assert prepared.input_size == (600, 500)
    ys, xs = np.nonzero(prepared.face_mask)
    assert 20 <= ys.min() and ys.max() <= 43 and 20 <= xs.min() and xs.max() <= 44
    with pytest.raises(S3potInputError, match=r"\(300, 250\), got \(300, 249\)"):
        pp.prepare_inputs(image, reference, parsing[:, :-1])
    with pytest.raises(NoFaceTokensError, match="only labels 0"):
        pp.prepare_inputs(image, reference, np.zeros_like(parsing))
    tiny_face = np.zeros_like(parsing)
    tiny_face[1, 1] = 6  # a face pixel, but at no token centre
    with pytest.raises(NoFaceTokensError, match="token centre"):
        pp.prepare_inputs(image, reference, tiny_face)
    with pytest.raises(S3potInputError, match="uint8 RGB"):
        pp.prepare_inputs(image.astype(np.float32), reference, parsing)
