"""Both dataset layouts of SPEC.md are found; incomplete samples are named; LabelMe is rasterised."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from s3pot.core.errors import S3potInputError
from s3pot.runtime.datasets import find_samples, load_ground_truth, load_labelme

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"


def test_the_shipped_sample_is_a_flat_layout():
    samples = find_samples(DATA)
    assert [s.name for s in samples] == ["obama_face"]
    gt = load_ground_truth(samples[0])
    assert gt.shape == (512, 512) and 0.05 < gt.mean() < 0.2


def _folder_sample(root: Path, name: str, with_json: bool = True) -> Path:
    folder = root / name
    folder.mkdir()
    cv2.imwrite(str(folder / "photo.jpg"), np.zeros((40, 60, 3), np.uint8))
    cv2.imwrite(str(folder / "Reference_photo.png"), np.zeros((40, 60, 3), np.uint8))
    np.save(folder / "photo_parsing_mask.npy", np.full((40, 60), 6, np.uint8))
    if with_json:
        doc = {"imageHeight": 40, "imageWidth": 60, "shapes": [
            {"label": "hand", "shape_type": "polygon", "points": [[10, 10], [30, 10], [30, 20], [10, 20]]},
            {"label": "cup", "shape_type": "rectangle", "points": [[40, 25], [50, 35]]}]}
        (folder / "photo.json").write_text(json.dumps(doc))
    return folder


def test_folder_layout_in_natural_order(tmp_path):
    for name in ("10", "2", "1"):
        _folder_sample(tmp_path, name, with_json=(name != "2"))
    samples = find_samples(tmp_path)
    assert [s.name for s in samples] == ["1", "2", "10"]
    assert samples[1].gt is None and samples[0].gt.suffix == ".json"
    mask = load_ground_truth(samples[0], (40, 60))
    assert mask[15, 20] and mask[30, 45] and not mask[5, 5]
    assert abs(int(mask.sum()) - (21 * 11 + 11 * 11)) <= 60  # both shapes, about their area


def test_labelme_scales_to_another_size(tmp_path):
    folder = _folder_sample(tmp_path, "1")
    small = load_labelme(folder / "photo.json")
    big = load_labelme(folder / "photo.json", (80, 120))
    assert big.shape == (80, 120) and abs(big.mean() - small.mean()) < 0.02


def test_incomplete_samples_are_listed(tmp_path):
    _folder_sample(tmp_path, "1")
    broken = _folder_sample(tmp_path, "2")
    (broken / "Reference_photo.png").unlink()
    cv2.imwrite(str(tmp_path / "x.jpg"), np.zeros((4, 4, 3), np.uint8))
    np.save(tmp_path / "x_parsing_mask.npy", np.zeros((4, 4), np.uint8))  # flat sample without ref
    with pytest.raises(S3potInputError, match=r"2 incomplete") as err:
        find_samples(tmp_path)
    assert "2 (missing reference" in str(err.value) and "x_ref.png" in str(err.value)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(S3potInputError, match="found neither"):
        find_samples(tmp_path)
    with pytest.raises(S3potInputError, match="no such folder"):
        find_samples(tmp_path / "absent")


def _flat_sample(root: Path, name: str, image_suffix: str = ".png", gt: bool = False) -> None:
    cv2.imwrite(str(root / f"{name}{image_suffix}"), np.zeros((20, 30, 3), np.uint8))
    cv2.imwrite(str(root / f"{name}_ref.png"), np.zeros((20, 30, 3), np.uint8))
    np.save(root / f"{name}_parsing_mask.npy", np.full((20, 30), 6, np.uint8))
    if gt:
        mask = np.zeros((20, 30), np.uint8)
        mask[5:10, 5:15] = 255
        cv2.imwrite(str(root / f"{name}_gt.png"), mask)


def test_flat_layout_in_natural_order(tmp_path, caplog):
    _flat_sample(tmp_path, "img10", ".jpeg")
    _flat_sample(tmp_path, "img2", ".jpg", gt=True)
    _flat_sample(tmp_path, "img1")
    samples = find_samples(tmp_path)
    assert [s.name for s in samples] == ["img1", "img2", "img10"]
    assert samples[0].image.name == "img1.png" and samples[0].reference.name == "img1_ref.png"
    assert samples[2].image.name == "img10.jpeg" and samples[2].parsing.name == "img10_parsing_mask.npy"
    assert samples[0].gt is None and load_ground_truth(samples[0]) is None
    gt = load_ground_truth(samples[1], (20, 30))
    assert gt.sum() == 50 and gt[7, 10]
    with caplog.at_level("WARNING"):
        big = load_ground_truth(samples[1], (40, 60))  # another size: nearest, with a warning
    assert big.shape == (40, 60) and big.sum() == 200 and "resizing" in caplog.text


def test_stray_ground_truth_is_an_incomplete_sample(tmp_path):
    _flat_sample(tmp_path, "a")
    cv2.imwrite(str(tmp_path / "b_gt.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(S3potInputError, match=r"1 incomplete.*b \(missing b\.png\|\.jpg\|\.jpeg, b_ref\.png"):
        find_samples(tmp_path)


def test_loose_images_are_neither_layout(tmp_path):
    cv2.imwrite(str(tmp_path / "preview.jpg"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes").mkdir()  # a folder without sample files is not a sample
    with pytest.raises(S3potInputError, match=r"Reference\*\.png.*found neither"):
        find_samples(tmp_path)


def test_ambiguous_sample_folder(tmp_path):
    folder = _folder_sample(tmp_path, "1")
    cv2.imwrite(str(folder / "other.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(S3potInputError, match=r"1 \(2 files for the image \(\*\.jpg\): other\.jpg, photo\.jpg\)"):
        find_samples(tmp_path)


def _labelme(path: Path, shapes, **size) -> Path:
    path.write_text(json.dumps({"shapes": shapes, **size}))
    return path


def test_labelme_shape_types(tmp_path):
    shapes = [
        {"label": "x", "shape_type": None, "points": [[0, 0], [9, 0], [9, 9], [0, 9]]},  # old LabelMe
        {"label": "x", "shape_type": "rectangle", "points": [[20, 0], [29, 0], [29, 9], [20, 9]]},  # 4-point
        {"label": "x", "shape_type": "circle", "points": [[45, 5], [49, 5]]},
        {"label": "x", "shape_type": "rotation", "points": [[5, 20], [15, 30], [5, 40], [-5, 30]]},
        {"label": "x", "shape_type": "point", "points": [[50, 50]]},  # no area: ignored
    ]
    mask = load_labelme(_labelme(tmp_path / "a.json", shapes, imageHeight=60, imageWidth=60))
    assert mask.shape == (60, 60)
    assert mask[0:10, 0:10].all() and mask[0:10, 20:30].all()
    assert 40 <= mask[0:11, 40:51].sum() <= 70  # circle of radius 4: ~50 pixels
    assert mask[30, 5] and not mask[21, 14] and not mask[50, 50]
    assert mask.sum() == 100 + 100 + mask[0:11, 40:51].sum() + mask[19:42, 0:17].sum()  # nothing else drawn


@pytest.mark.parametrize("content,size,match", [
    ("{not json", None, "LabelMe JSON"),
    ('{"imageHeight": 5, "imageWidth": 5}', None, "'shapes' list"),
    ('{"shapes": []}', None, "imageHeight and imageWidth"),
    ('{"shapes": [{"shape_type": "mask", "points": []}]}', (5, 5), "got 'mask'"),
    ('{"shapes": [{"shape_type": "polygon", "points": "abc"}]}', (5, 5), "shape 0.*points"),
])
def test_labelme_errors_name_the_file(tmp_path, content, size, match):
    (tmp_path / "gt.json").write_text(content)
    with pytest.raises(S3potInputError, match=match) as err:
        load_labelme(tmp_path / "gt.json", size)
    assert "gt.json" in str(err.value)
