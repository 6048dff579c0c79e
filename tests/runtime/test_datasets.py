"""Both dataset layouts of SPEC.md are found; incomplete samples are named; LabelMe is rasterised."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from s3pot.kernels.errors import S3potInputError
from s3pot.runtime.datasets import find_samples, load_ground_truth, load_labelme

DATA = Path(__file__).resolve().parents[1] / "data"


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
