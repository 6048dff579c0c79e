"""Resizing, normalisation and post-processing: the contract every backend shares."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from s3pot.core.errors import NoFaceTokensError, S3potInputError
from s3pot.core.spec import NORMALIZATIONS
from s3pot.runtime import preprocess as pp
from s3pot.runtime.io import load_image


def _half_pixel_bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The definition of ``F.interpolate(mode="bilinear", align_corners=False)`` in float64:
    output pixel ``i`` reads source coordinate ``max((i + 0.5) * in / out - 0.5, 0)``."""
    def taps(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    (r0, r1, wr), (c0, c1, wc) = taps(array.shape[0], size[0]), taps(array.shape[1], size[1])
    rows = array.astype(np.float64)[r0] * (1 - wr)[:, None] + array.astype(np.float64)[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


SIZES = [(1024, 1024), (1137, 910), (240, 320), (2204, 970), (661, 1126)]


def test_postprocess_is_half_pixel_bilinear():
    """Against the definition in float64, to 1024 and then to the input size, up and down: 1e-5
    absolute on unit-scale logits (measured: below 1e-6)."""
    low = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    for size in SIZES:
        want = _half_pixel_bilinear(_half_pixel_bilinear(low, (1024, 1024)), size)
        got = pp.postprocess_logits(low, size)
        assert got.shape == size and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-5, size


def test_postprocess_matches_torch_bilinear():
    """cv2 INTER_LINEAR on float32 == F.interpolate(bilinear, align_corners=False), up and down.

    Tolerance 2e-4 absolute on unit-scale logits: torch computes source coordinates in float32,
    which strays from the exact half-pixel position by up to ~1e-4 at non-integer ratios (OpenCV
    stays within 1e-6 of it, see the test above)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
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
        # bit for bit the float32 expression it replaces, into a strided slot of a batch too
        chw = rgb.transpose(2, 0, 1).astype(np.float32)
        f32 = [np.asarray(v, np.float32).reshape(3, 1, 1) for v in (mean, std)]
        np.testing.assert_array_equal(x, (chw - f32[0]) / f32[1])
        batch = np.zeros((2, 3, 1024, 1024), np.float32)
        pp.normalize(rgb, name, out=batch[1])
        np.testing.assert_array_equal(batch[1], x)
        assert not batch[0].any()
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
    with pytest.raises(S3potInputError, match=r"\(300, 250\), or another size of the same aspect ratio, got \(300, 200\)"):
        pp.prepare_inputs(image, reference, parsing[:, :200])
    double = np.repeat(np.repeat(parsing, 2, axis=0), 2, axis=1)  # a parser's map at 2x resolution
    assert np.array_equal(pp.prepare_inputs(image, reference, double).face_mask, prepared.face_mask)
    with pytest.raises(NoFaceTokensError, match="only labels 0"):
        pp.prepare_inputs(image, reference, np.zeros_like(parsing))
    tiny_face = np.zeros_like(parsing)
    tiny_face[1, 1] = 6  # a face pixel, but at no token centre
    with pytest.raises(NoFaceTokensError, match="token centre"):
        pp.prepare_inputs(image, reference, tiny_face)
    with pytest.raises(S3potInputError, match="uint8 RGB"):
        pp.prepare_inputs(image.astype(np.float32), reference, parsing)


def test_resize_rule_per_axis():
    """INTER_AREA on an axis that shrinks, INTER_LINEAR on one that grows; a mixed resize is the
    two one-axis resizes in turn."""
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (240, 320, 3)).astype(np.uint8)
    assert np.array_equal(pp.resize_image(small), cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_LINEAR))
    big = rng.integers(0, 256, (1500, 1200, 3)).astype(np.uint8)
    assert np.array_equal(pp.resize_image(big), cv2.resize(big, (1024, 1024), interpolation=cv2.INTER_AREA))
    tall = rng.integers(0, 256, (2204, 970, 3)).astype(np.uint8)
    rows = cv2.resize(tall.astype(np.float32), (970, 1024), interpolation=cv2.INTER_AREA)
    want = cv2.resize(rows, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    assert np.abs(pp.resize_image(tall).astype(np.float32) - want).max() <= 0.5


def test_real_faces_prepare_from_files(tmp_path, faces_dir):
    from helpers import ellipse_parsing

    for name in ("obama.jpg", "biden.jpg", "obama_small.jpg", "32bit.png"):
        image = faces_dir / name
        h, w = load_image(image).shape[:2]
        parsing = ellipse_parsing((h, w), centre=(w // 2, h // 3), axes=(w // 6, h // 6))
        np.save(tmp_path / "p.npy", parsing)
        prepared = pp.prepare_inputs(image, image, tmp_path / "p.npy", face_set="authors")
        assert prepared.input_size == (h, w) and prepared.face_mask.any(), name
        assert prepared.face_region.shape == (1024, 1024)
        assert np.isfinite(prepared.pixels).all()
        assert np.array_equal(prepared.pixels[0], prepared.pixels[1])


def test_parsing_file_errors_name_the_file(tmp_path, faces_dir):
    np.save(tmp_path / "wrong.npy", np.full((100, 100), 6, np.uint8))
    with pytest.raises(S3potInputError, match=r"wrong\.npy.*\(1137, 910\), or another size of the same aspect ratio, got \(100, 100\)"):
        pp.prepare_inputs(faces_dir / "obama.jpg", faces_dir / "obama.jpg", tmp_path / "wrong.npy")
    np.save(tmp_path / "hair.npy", np.full((1137, 910), 4, np.uint8))
    with pytest.raises(NoFaceTokensError, match=r"hair\.npy.*only labels 4"):
        pp.prepare_inputs(faces_dir / "obama.jpg", faces_dir / "obama.jpg", tmp_path / "hair.npy")
    with pytest.raises(S3potInputError, match="normalization"):
        pp.prepare_inputs(faces_dir / "obama.jpg", faces_dir / "obama.jpg", tmp_path / "hair.npy",
                          normalization="imagenet")


def test_points_to_input_maps_token_centres():
    centres = np.array([[8, 8], [1016, 520]], np.float32)
    assert np.allclose(pp.points_to_input(centres, (1024, 1024)), centres)
    # 512 wide: pixel centre 8 of 1024 lies at 3.75 of 512 (half-pixel centres, like the resize)
    assert np.allclose(pp.points_to_input(centres, (2048, 512)), [[3.75, 16.5], [507.75, 1040.5]])


@pytest.mark.parametrize("image_hw, reference_hw, match", [
    ((1, 1), (512, 512), "image: expected at least 64 x 64 pixels .* got 1 x 1"),
    ((512, 512), (40, 40), "reference: expected at least 64 x 64 pixels"),
    ((400, 512), (512, 512), "expected the same aspect ratio .* got 512 x 400 and 512 x 512"),
])
def test_image_and_reference_must_show_the_same_frame(image_hw, reference_hw, match):
    """They are compared token by token after the resize to 1024 x 1024."""
    image = np.zeros((*image_hw, 3), np.uint8)
    reference = np.zeros((*reference_hw, 3), np.uint8)
    parsing = np.full(reference_hw, 6, np.uint8)
    with pytest.raises(S3potInputError, match=match):
        pp.prepare_inputs(image, reference, parsing)


def test_image_and_reference_may_differ_in_resolution():
    image = np.zeros((256, 256, 3), np.uint8)
    reference = np.zeros((1024, 1024, 3), np.uint8)
    prepared = pp.prepare_inputs(image, reference, np.full((512, 512), 6, np.uint8))
    assert prepared.input_size == (256, 256)  # outputs at the image's size


def test_reference_key_names_the_reference_as_prepared():
    """The reference cache's key comes with the sample: the same reference (any image beside it)
    gives the same key; another reference or another normalisation another one."""
    rng = np.random.default_rng(5)
    image, other = (rng.integers(0, 256, (300, 240, 3), dtype=np.uint8) for _ in range(2))
    reference = rng.integers(0, 256, (300, 240, 3), dtype=np.uint8)
    parsing = np.ones((300, 240), np.uint8)
    key = pp.prepare_inputs(image, reference, parsing).reference_key
    assert key == pp.prepare_inputs(other, reference, parsing).reference_key
    assert key != pp.prepare_inputs(image, other, parsing).reference_key
    assert key != pp.prepare_inputs(image, reference, parsing, normalization="unit").reference_key
