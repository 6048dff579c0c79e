"""`s3pot prepare` then `s3pot segment`: real photos in, aligned samples out, masks pasted back."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from helpers import FACE_PHOTOS, FACES

from s3pot.runtime.cli import EXIT_USER_ERROR, main

TINY = ["--variant", "tiny", "--random-weights", "--device", "cpu"]


def _occluded_obama(tmp_path):
    image = cv2.imread(str(FACES / "obama.jpg"))
    cv2.rectangle(image, (430, 300), (590, 420), (40, 160, 40), -1)  # a green card over the mouth
    path = tmp_path / "obama_covered.jpg"
    cv2.imwrite(str(path), image)
    return path


def test_prepare_then_segment_against_a_photo_of_the_same_person(tmp_path, capsys):
    prepared, results = tmp_path / "prepared", tmp_path / "results"
    photo = _occluded_obama(tmp_path)
    assert main(["prepare", str(photo), "--reference", str(FACES / "obama.jpg"), "--out", str(prepared)]) == 0
    assert "obama_covered.jpg: 1 face -> obama_covered" in capsys.readouterr().out
    names = sorted(p.name for p in prepared.iterdir())
    assert names == ["obama_covered.png", "obama_covered_align.json", "obama_covered_parsing_mask.npy",
                     "obama_covered_ref.png"]
    crop = cv2.imread(str(prepared / "obama_covered.png"))
    reference = cv2.imread(str(prepared / "obama_covered_ref.png"))
    labels = np.load(prepared / "obama_covered_parsing_mask.npy", allow_pickle=False)
    assert crop.shape == reference.shape == (1024, 1024, 3) and labels.shape == (1024, 1024)
    record = json.loads((prepared / "obama_covered_align.json").read_text())
    # The reference lines up with the crop: over the face, they differ where the card is.
    card = np.zeros((1137, 910), np.uint8)
    card[300:421, 430:591] = 1
    card = cv2.warpAffine(card, np.array(record["matrix"]), (1024, 1024)) > 0
    differ = np.abs(crop.astype(int) - reference).sum(axis=2) > 60
    face = (labels > 0) & ~card
    assert differ[card].mean() > 0.9 and differ[face].mean() < 0.1
    assert record["source"] == str(photo.resolve()) and record["source_size"] == [1137, 910]
    assert record["reference"].startswith("photo ")

    assert main(["segment", "--input-dir", str(prepared), "--out", str(results), "--save-vis", *TINY]) == 0
    crop_mask = cv2.imread(str(results / "obama_covered_occlusion.png"), cv2.IMREAD_UNCHANGED) > 0
    source_mask = cv2.imread(str(results / "obama_covered_source_occlusion.png"), cv2.IMREAD_UNCHANGED) > 0
    assert crop_mask.shape == (1024, 1024) and source_mask.shape == (1137, 910)
    assert cv2.imread(str(results / "obama_covered_source_vis.jpg")).shape == (1137, 910, 3)
    # The pasted mask is the crop's mask in the photo's frame: taken back into the crop by the
    # recorded transform it covers the crop's mask, and its area is scaled by 1 / scale^2.
    matrix = np.array(record["matrix"])
    again = cv2.warpAffine(source_mask.astype(np.uint8), matrix, (1024, 1024), flags=cv2.INTER_NEAREST) > 0
    inside = cv2.warpAffine(np.ones((1137, 910), np.uint8), matrix, (1024, 1024), flags=cv2.INTER_NEAREST) > 0
    scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    target = (crop_mask & inside).astype(np.uint8)
    edge = target ^ cv2.erode(target, np.ones((3, 3), np.uint8))
    reach = 2 * int(np.ceil(scale)) + 3  # one photo pixel is `scale` crop pixels
    band = cv2.dilate(edge, np.ones((reach, reach), np.uint8)) > 0
    assert ((again ^ target.astype(bool)) & ~band).sum() <= 0.001 * target.sum()
    assert source_mask.sum() == pytest.approx((crop_mask & inside).sum() / scale**2, rel=0.03, abs=50)


def test_prepare_every_test_photo_without_a_reference(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["prepare", *(str(FACES / name) for name in FACE_PHOTOS), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "two_people.jpg: 2 faces -> two_people_face1, two_people_face2" in printed
    assert "6 aligned faces" in printed and "no reference" in printed
    crops = sorted(p.name for p in out.glob("*.png"))
    assert crops == ["32bit.png", "biden.png", "obama.png", "obama_small.png", "two_people_face1.png",
                     "two_people_face2.png"]
    for crop in crops:
        stem = crop[:-4]
        assert cv2.imread(str(out / crop)).shape == (1024, 1024, 3)  # alpha dropped, small upscaled
        labels = np.load(out / f"{stem}_parsing_mask.npy", allow_pickle=False)
        assert (labels == 6).mean() > 0.1 and (labels == 3).any()
        assert json.loads((out / f"{stem}_align.json").read_text())["faces"] in (1, 2)


def test_a_photo_without_a_face_writes_nothing(tmp_path, capsys):
    wall, out = tmp_path / "wall.jpg", tmp_path / "out"
    cv2.imwrite(str(wall), np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8))
    assert main(["prepare", str(wall), "--out", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"s3pot: error: photo '{wall}': expected a face, got none found (600x400")
    assert len(err.splitlines()) == 1 and not out.exists()  # one line: LiteRT's own log is silenced


def test_prepare_with_a_generator_and_bad_options(tmp_path, capsys):
    from test_references import _generator

    out = tmp_path / "out"
    generator = _generator(tmp_path / "g.onnx", parsing_shape=[1, "H", "W"])
    assert main(["prepare", str(FACES / "obama_small.jpg"), "--generator", str(generator),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "obama_small_align.json").read_text())["reference"].startswith("generator ")
    assert cv2.imread(str(out / "obama_small_ref.png")).shape == (1024, 1024, 3)
    for argv, message in (
            (["--parsing", str(FACES / "obama.jpg")], "--parsing: expected it with --reference"),
            (["--reference", str(FACES / "obama.jpg"), "--generator", str(generator)], "got both"),
            (["--min-score", "1.5"], "--min-score: expected a value between 0 and 1, got 1.5"),
            (["--reference", str(tmp_path / "missing.jpg")], "missing.jpg': expected an existing file")):
        capsys.readouterr()
        assert main(["prepare", str(FACES / "obama.jpg"), "--out", str(tmp_path / "x"), *argv]) == EXIT_USER_ERROR
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_without_the_face_extra_the_install_command_is_named(tmp_path, capsys, monkeypatch):
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(__import__("sys").modules, module, None)  # as if not installed
    out = tmp_path / "out"
    assert main(["prepare", str(FACES / "obama.jpg"), "--out", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert 'pip install "s3pot-rt[face]"' in err and "Traceback" not in err and not out.exists()


def test_photos_with_the_same_name_are_refused(tmp_path, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "obama.jpg").write_bytes((FACES / "obama.jpg").read_bytes())
    out = tmp_path / "out"
    assert main(["prepare", str(FACES / "obama.jpg"), str(other / "obama.jpg"), "--out", str(out)]) == EXIT_USER_ERROR
    assert "photos: expected distinct names" in capsys.readouterr().err and not out.exists()


def test_names_that_would_clash_in_the_sample_layout(tmp_path, capsys):
    out = tmp_path / "out"
    ref_named = tmp_path / "me_ref.jpg"
    ref_named.write_bytes((FACES / "obama.jpg").read_bytes())
    assert main(["prepare", str(ref_named), "--out", str(out)]) == EXIT_USER_ERROR
    assert "expected a name not ending in _ref or _gt" in capsys.readouterr().err
    # two_people.jpg makes two_people_face1; a photo of that name next is refused, not overwritten.
    clash = tmp_path / "two_people_face1.jpg"
    clash.write_bytes((FACES / "obama.jpg").read_bytes())
    assert main(["prepare", str(FACES / "two_people.jpg"), str(clash), "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert "samples two_people_face1 clash with an earlier photo's" in printed.err
    assert "2 aligned faces" in printed.out
    assert json.loads((out / "two_people_face1_align.json").read_text())["source"].endswith("two_people.jpg")


def test_a_photo_reference_for_a_group_photo_is_warned_about(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", str(FACES / "two_people.jpg"), "--reference", str(FACES / "obama.jpg"),
                 "--out", str(out)]) == 0
    assert "every face got the reference photo of one person" in capsys.readouterr().err
    assert main(["prepare", str(FACES / "two_people.jpg"), "--reference", str(FACES / "obama.jpg"),
                 "--largest-only", "--out", str(tmp_path / "one")]) == 0
    assert "every face" not in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "one").glob("*.png")) == ["two_people.png", "two_people_ref.png"]


def test_paste_back_skips_foreign_sidecars_and_follows_resized_crops(tmp_path, caplog):
    prepared, results = tmp_path / "prepared", tmp_path / "results"
    assert main(["prepare", str(FACES / "obama_small.jpg"), "--reference", str(FACES / "obama_small.jpg"),
                 "--out", str(prepared), "--size", "512"]) == 0
    assert cv2.imread(str(prepared / "obama_small.png")).shape == (512, 512, 3)
    assert main(["segment", "--input-dir", str(prepared), "--out", str(results), *TINY]) == 0
    pasted = cv2.imread(str(results / "obama_small_source_occlusion.png"), cv2.IMREAD_UNCHANGED)
    assert pasted.shape == (240, 320)
    visible = cv2.imread(str(results / "obama_small_source_visible_face.png"), cv2.IMREAD_UNCHANGED)
    assert visible.shape == (240, 320) and not ((pasted > 0) & (visible > 0)).any()
    (prepared / "obama_small_align.json").write_text('{"format": "someone-else/2"}')
    assert main(["segment", "--input-dir", str(prepared), "--out", str(tmp_path / "r2"), *TINY]) == 0
    assert (tmp_path / "r2" / "obama_small_occlusion.png").is_file()
    assert not (tmp_path / "r2" / "obama_small_source_occlusion.png").exists()
    assert "not pasted back" in caplog.text and "someone-else/2" in caplog.text
