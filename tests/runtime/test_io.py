"""Image / parsing / mask I/O: every supported form loads, every broken one is one clear error."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from s3pot.core.errors import S3potInputError
from s3pot.runtime import io as sio


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    return path


def test_real_faces_load_as_rgb(faces_dir):
    shapes = {"obama.jpg": (1137, 910), "biden.jpg": (2204, 970), "obama_small.jpg": (240, 320),
              "two_people.jpg": (661, 1126), "32bit.png": (1200, 626)}
    for name, (h, w) in shapes.items():
        rgb = sio.load_image(faces_dir / name)
        assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8, name


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200  # red in RGB order
    rgba[..., 3] = 7
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    rgb = sio.load_image(tmp_path / "a.png")
    assert rgb.shape == (20, 30, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 1:] == 0).all()


def test_grayscale_and_16_bit(tmp_path):
    gray = np.arange(200, dtype=np.uint8).reshape(10, 20)
    rgb = sio.load_image(_write(tmp_path / "g.png", gray))
    assert rgb.shape == (10, 20, 3) and (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()
    deep = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 257)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    assert (sio.load_image(tmp_path / "d.png")[..., 1] == gray).all()


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (255, 0, 0)  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    shown = sio.load_image(tmp_path / "rot.jpg")
    assert shown.shape == (60, 40, 3)  # displayed upright: width and height swapped
    assert shown[5, 20, 0] > 200 and shown[55, 20, 0] < 50  # stored left half is now on top


@pytest.mark.parametrize("content,match", [
    (None, "no such file"), (b"", "empty file"), (b"\x89PNG\r\n\x1a\n truncated", "cannot decode"),
    (b"GIF89a not really", "cannot decode")])
def test_broken_images(tmp_path, content, match):
    path = tmp_path / "face.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(S3potInputError, match=match) as err:
        sio.load_image(path)
    assert "face.png" in str(err.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(S3potInputError, match="expected a file"):
        sio.load_image(tmp_path)


def test_parsing_npy_and_png(tmp_path):
    labels = np.random.default_rng(0).integers(0, 12, (30, 40)).astype(np.int64)
    np.save(tmp_path / "p.npy", labels)
    assert np.array_equal(sio.load_parsing(tmp_path / "p.npy"), labels)
    np.save(tmp_path / "f.npy", labels.astype(np.float32)[..., None])
    assert np.array_equal(sio.load_parsing(tmp_path / "f.npy"), labels)
    cv2.imwrite(str(tmp_path / "p.png"), labels.astype(np.uint8))
    assert np.array_equal(sio.load_parsing(tmp_path / "p.png"), labels)


@pytest.mark.parametrize("array,match", [
    (np.full((4, 4), 12), r"0\.\.11"), (np.full((4, 4), -1), r"0\.\.11"),
    (np.full((4, 4), np.nan), "NaN"), (np.full((4, 4), 1.5), "fractional"),
    (np.zeros((2, 4, 4)), "H x W"), (np.full((3, 3), "a"), "dtype")])
def test_bad_parsing_arrays(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(S3potInputError, match=match) as err:
        sio.load_parsing(tmp_path / "bad.npy")
    assert "bad.npy" in str(err.value)


def test_pickled_parsing_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(S3potInputError, match="pickle"):
        sio.load_parsing(tmp_path / "obj.npy")


def test_colour_png_is_not_a_label_map(tmp_path):
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[..., 0] = 3
    _write(tmp_path / "c.png", rgb)
    with pytest.raises(S3potInputError, match="single-channel"):
        sio.load_parsing(tmp_path / "c.png")


def test_masks_round_trip_and_atomic_writes(tmp_path, monkeypatch):
    mask = np.zeros((7, 9), bool)
    mask[2:5, 3:8] = True
    path = sio.save_mask_png(tmp_path / "sub" / "m.png", mask)
    assert np.array_equal(sio.load_mask(path), mask)
    assert sio.write_text_atomic(tmp_path / "t.json", "{}").read_text() == "{}"

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("s3pot.core.atomic.os.replace", failing_replace)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(OSError):
        sio.save_mask_png(tmp_path / "sub" / "late.png", mask)
    assert set(tmp_path.rglob("*")) == before  # neither the target nor a temp file remains


def test_astronaut_webp_bmp_and_non_ascii_path(tmp_path):
    from skimage import data

    rgb = data.astronaut()  # 512 x 512 RGB
    for name in ("äström ñame.bmp", "顔.png", "face.webp"):
        path = sio.save_image(tmp_path / "sübdir" / name, rgb)
        back = sio.load_image(path)
        assert back.shape == rgb.shape and back.dtype == np.uint8
        assert np.abs(back.astype(int) - rgb).mean() < 3, name  # WebP is lossy; the others exact


def test_truncated_jpeg_is_an_error(tmp_path, faces_dir):
    data = (faces_dir / "obama.jpg").read_bytes()
    for cut in (2, len(data) // 2):  # only the end marker missing; half the scan missing
        path = tmp_path / f"cut{cut}.jpg"
        path.write_bytes(data[:-cut])
        with pytest.raises(S3potInputError, match="cannot decode"):
            sio.load_image(path)


def test_raw_pickle_is_refused(tmp_path):
    import pickle

    (tmp_path / "p.npy").write_bytes(pickle.dumps({"labels": [1, 2]}))
    with pytest.raises(S3potInputError, match="pickle") as err:
        sio.load_parsing(tmp_path / "p.npy")
    assert "p.npy" in str(err.value)


def test_grey_rgb_label_png_is_accepted(tmp_path):
    labels = np.random.default_rng(4).integers(0, 12, (6, 8)).astype(np.uint8)
    _write(tmp_path / "grey3.png", np.repeat(labels[..., None], 3, axis=2))
    assert np.array_equal(sio.load_parsing(tmp_path / "grey3.png"), labels)


def test_parsing_wrong_ndim_names_the_file(tmp_path):
    np.save(tmp_path / "vec.npy", np.zeros(10, np.uint8))
    with pytest.raises(S3potInputError, match=r"vec\.npy.*H x W.*\(10,\)"):
        sio.load_parsing(tmp_path / "vec.npy")


def test_colour_ground_truth_mask(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha must not count as occlusion
    rgba[1, 2, 0] = 1  # a faint mark in one colour channel does
    cv2.imwrite(str(tmp_path / "gt.png"), rgba)
    mask = sio.load_mask(tmp_path / "gt.png")
    assert mask.shape == (4, 5) and mask.sum() == 1 and mask[1, 2]


def test_failed_encode_leaves_the_old_file(tmp_path, monkeypatch):
    rgb = np.full((4, 4, 3), 9, np.uint8)
    path = sio.save_image(tmp_path / "out.png", rgb)
    before = path.read_bytes()

    def failing_imencode(*args, **kwargs):
        raise cv2.error("simulated encoder failure")

    monkeypatch.setattr(cv2, "imencode", failing_imencode)
    with pytest.raises(S3potInputError, match="out.png"):
        sio.save_image(path, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(S3potInputError, match="m.png"):
        sio.save_mask_png(tmp_path / "new" / "m.png", np.ones((4, 4), bool))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out.png"]


def test_unknown_suffix_is_an_error(tmp_path):
    with pytest.raises(S3potInputError, match=r"\.xyz"):
        sio.save_image(tmp_path / "a.xyz", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_overlay_marks_occlusion_face_and_prompts(tmp_path):
    from s3pot.runtime.visualize import overlay

    rgb = np.full((200, 300, 3), 128, np.uint8)
    occlusion = np.zeros((200, 300), bool)
    occlusion[50:100, 50:150] = True
    face = np.zeros((200, 300), bool)
    face[20:180, 30:270] = True
    out = overlay(rgb, occlusion, face, occlusion_points=[[100, 75]], face_points=[[250, 150]])
    assert out.shape == rgb.shape and out.dtype == np.uint8 and np.array_equal(rgb, np.full_like(rgb, 128))
    assert out[60, 60, 0] > 128 > out[60, 60, 1]  # tinted red
    assert out[20, 100, 1] > 180 > 100 > out[20, 100, 0]  # visible-face outline (anti-aliased green)
    assert not np.array_equal(out[70:80, 95:105], overlay(rgb, occlusion, face)[70:80, 95:105])  # prompt mark
    sio.save_image(tmp_path / "vis.jpg", out)
    with pytest.raises(S3potInputError, match="occlusion mask"):
        overlay(rgb, occlusion[:-1])
