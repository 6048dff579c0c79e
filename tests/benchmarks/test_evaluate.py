"""`s3pot evaluate`: occlusion IoU per image and pooled, on a dataset built from real face photos
(the sample face of benchmarks/data and skimage's astronaut, occluders pasted in)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import astronaut_sample
from s3pot.runtime.metrics import score, summarize
from s3pot.core.errors import S3potInputError
from s3pot.runtime.cli import main

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"


def _mask(shape, box) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    y0, y1, x0, x1 = box
    mask[y0:y1, x0:x1] = 255
    return mask


@pytest.fixture()
def dataset(tmp_path):
    """Three samples with ground truth in the README layout, and one without."""
    root = tmp_path / "data"
    root.mkdir()
    for name in ("obama", "shifted", "nogt"):
        shutil.copy(DATA / "obama_face.jpg", root / f"{name}.jpg")
        shutil.copy(DATA / "obama_face_ref.jpg", root / f"{name}_ref.jpg")
        shutil.copy(DATA / "obama_face_parsing_mask.npy", root / f"{name}_parsing_mask.npy")
    shutil.copy(DATA / "obama_face_gt.png", root / "obama_gt.png")
    cv2.imwrite(str(root / "shifted_gt.png"), _mask((512, 512), (100, 110, 100, 110)))  # 100 px
    image, reference, parsing = astronaut_sample()
    cv2.imwrite(str(root / "astronaut.png"), image[..., ::-1])
    cv2.imwrite(str(root / "astronaut_ref.png"), reference[..., ::-1])
    np.save(root / "astronaut_parsing_mask.npy", parsing)
    cv2.imwrite(str(root / "astronaut_gt.png"), _mask((512, 512), (150, 230, 200, 300)))  # the "cup"
    return root


def test_known_ious_per_image_and_pooled(dataset, tmp_path):
    predictions = tmp_path / "pred"
    predictions.mkdir()
    truth = cv2.imread(str(dataset / "obama_gt.png"), cv2.IMREAD_GRAYSCALE) > 0
    cv2.imwrite(str(predictions / "obama_occlusion.png"), truth.astype(np.uint8) * 255)  # equal: 1
    cv2.imwrite(str(predictions / "astronaut_occlusion.png"),
                _mask((512, 512), (0, 100, 0, 100)))  # disjoint from the cup: 0
    cv2.imwrite(str(predictions / "shifted_occlusion.png"),
                _mask((512, 512), (105, 115, 100, 110)))  # half of it overlaps: 50 / 150
    out = tmp_path / "eval"
    assert main(["evaluate", "--input-dir", str(dataset), "--predictions", str(predictions),
                 "--out", str(out)]) == 0
    rows = {r["name"]: r for r in csv.DictReader((out / "iou.csv").open())}
    assert set(rows) == {"obama", "astronaut", "shifted"}
    assert float(rows["obama"]["iou"]) == 1.0 and float(rows["astronaut"]["iou"]) == 0.0
    assert float(rows["shifted"]["iou"]) == pytest.approx(1 / 3, abs=1e-6)
    assert (int(rows["shifted"]["intersection"]), int(rows["shifted"]["union"])) == (50, 150)
    summary = json.loads((out / "summary.json").read_text())
    cup, gt_pixels = 80 * 100, int(truth.sum())
    assert summary["mean_iou"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert summary["pooled_iou"] == pytest.approx((gt_pixels + 0 + 50) / (gt_pixels + cup + 100 * 100 + 150))
    assert summary["images"] == 3 and summary["skipped"] == ["nogt"]


def test_evaluate_runs_a_model_over_the_dataset(dataset, tiny_export_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--input-dir", str(dataset), "--backend", "onnxruntime", "--model",
                 str(tiny_export_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "iou.csv").open()))
    assert len(rows) == 3 and all(0.0 <= float(r["iou"]) <= 1.0 for r in rows)
    assert "occlusion IoU over 3 images" in capsys.readouterr().out


def test_a_dataset_without_ground_truth_is_one_clear_error(dataset, tmp_path, capsys):
    for path in dataset.glob("*_gt.png"):
        path.unlink()
    assert main(["evaluate", "--input-dir", str(dataset), "--predictions", str(tmp_path),
                 "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected samples with ground truth" in err
    assert not (tmp_path / "eval").exists()


def test_a_missing_prediction_is_named(dataset, tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    assert main(["evaluate", "--input-dir", str(dataset), "--predictions", str(tmp_path / "pred"),
                 "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "_occlusion.png" in err and err.count("\n") == 1
    assert not (tmp_path / "eval").exists()


def test_score_refuses_masks_of_different_sizes():
    with pytest.raises(S3potInputError, match="ground truth's size"):
        score("x", np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    assert summarize([score("x", np.zeros((4, 4), bool), np.zeros((4, 4), bool))], [])["pooled_iou"] == 1.0
