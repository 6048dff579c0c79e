"""`s3pot segment --video`: a short clip made from a real photo, the reference encoded once."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from helpers import FACES

from s3pot.runtime.cli import EXIT_USER_ERROR, main

TINY = ["--variant", "tiny", "--random-weights", "--device", "cpu"]
FRAMES, SIDE, BLANK = 7, 288, 5  # frame BLANK shows no face


def _clip(path):
    """A crop moving over obama.jpg, a green card over the mouth in frames 2-4, a grey frame."""
    photo = cv2.imread(str(FACES / "obama.jpg"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (SIDE, SIDE))
    for index in range(FRAMES):
        x, y = 290 + 10 * index, 90 + 5 * index
        frame = cv2.resize(photo[y:y + 400, x:x + 400], (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        if 2 <= index <= 4:
            cv2.rectangle(frame, (110, 180), (210, 240), (40, 160, 40), -1)
        if index == BLANK:
            frame[:] = 128
        writer.write(frame)
    writer.release()
    return path


def _frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _clip(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_video_segmented_with_one_reference_encoding(clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", "--video", str(clip), "--reference", str(FACES / "obama.jpg"),
                 "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr()
    assert f"clip.mp4: {FRAMES} frames at" in printed.out and "reference encoded 1x" in printed.out
    assert "frame/s" in printed.err  # the progress bar
    report = json.loads((out / "clip_video.json").read_text())
    assert report["frames"] == FRAMES and report["size"] == [SIDE, SIDE]
    assert report["frames_without_face"] == [BLANK] and report["frames_expected"] == FRAMES
    assert report["references_encoded"] == 1 and report["reference_cache_hits"] == FRAMES - 2
    assert report["fps"] > 0
    masks, overlays = _frames(out / "clip_mask.mp4"), _frames(out / "clip_overlay.mp4")
    assert len(masks) == len(overlays) == FRAMES
    assert all(frame.shape == (SIDE, SIDE, 3) for frame in masks + overlays)
    assert masks[BLANK].max() < 30  # no face: an empty mask ...
    original = _frames(clip)[BLANK]
    assert np.abs(overlays[BLANK].astype(int) - original).mean() < 4  # ... and the frame itself
    assert sorted(p.name for p in out.iterdir()) == ["clip_mask.mp4", "clip_overlay.mp4", "clip_video.json"]


def test_video_errors_are_one_line_and_write_nothing(clip, tmp_path, capsys):
    out = tmp_path / "out"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 2048)
    for argv, message in (
            (["--video", str(clip)], "--video: expected --reference PHOTO"),
            (["--video", str(broken), "--reference", str(FACES / "obama.jpg")],
             f"video '{broken}': expected a video OpenCV can read"),
            (["--video", str(clip), "--image", str(FACES / "obama.jpg"), "--reference",
              str(FACES / "obama.jpg")], "expected --video alone"),
            (["--image", str(FACES / "obama.jpg"), "--generator", str(clip)],
             "--generator: expected it with --video")):
        assert main(["segment", *argv, "--out", str(out), *TINY]) == EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not out.exists()


def test_a_failing_generator_stops_the_video_with_nothing_written(clip, tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])
    parsing = helper.make_tensor_value_info("parsing", TensorProto.INT64, [1, "H", "W"])
    out_info = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "H", "W"])
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])
    graph = helper.make_graph([helper.make_node("Mul", ["image", "nan"], ["out"])], "g",
                              [image, parsing], [out_info], [nan])
    generator = tmp_path / "nan.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(generator))
    out = tmp_path / "out"
    assert main(["segment", "--video", str(clip), "--generator", str(generator), "--out", str(out),
                 *TINY]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "with NaN or infinite values" in err and "Traceback" not in err
    assert not out.exists()


def test_a_reference_without_face_labels_is_refused_before_any_frame(clip, tmp_path, capsys):
    reference, parsing, out = tmp_path / "ref.png", tmp_path / "hair.npy", tmp_path / "out"
    cv2.imwrite(str(reference), np.full((256, 256, 3), 120, np.uint8))
    np.save(parsing, np.full((256, 256), 4, np.uint8))  # all hair: no face token
    assert main(["segment", "--video", str(clip), "--reference", str(reference), "--parsing",
                 str(parsing), "--out", str(out), *TINY]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"reference files '{reference}'" in err and "face" in err and not out.exists()


def test_a_video_without_faces_and_a_cut_video(tmp_path, capsys):
    grey = tmp_path / "grey.avi"
    writer = cv2.VideoWriter(str(grey), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for value in range(8):
        writer.write(np.full((120, 160, 3), 60 + 10 * value, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["segment", "--video", str(grey), "--reference", str(FACES / "obama.jpg"),
                 "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert f"video '{grey}': expected a face in at least one frame, got none in 8" in err
    cut = tmp_path / "cut.avi"
    cut.write_bytes(grey.read_bytes()[: int(grey.stat().st_size * 0.85)])  # the AVI index goes
    main(["segment", "--video", str(cut), "--reference", str(FACES / "obama.jpg"),
          "--out", str(tmp_path / "out2"), *TINY])
    report = json.loads((tmp_path / "out2" / "cut_video.json").read_text())
    assert report["frames_expected"] == 8 and report["frames"] < 8
    assert "a cut or damaged file" in capsys.readouterr().err


@pytest.mark.parametrize("card", [(430, 300, 590, 420), (380, 200, 620, 260), (360, 180, 480, 420)])
def test_each_frame_is_registered_onto_the_fixed_reference(finder, photos, card):
    """A card over the mouth, the eyes or one side bends the mesh, and the landmarks' crop misses
    the reference; ECC moves the frame onto it (the reference's pixels stay cacheable)."""
    from s3pot.frontend.references import PhotoReference
    from s3pot.frontend.video import align_to_reference

    reference, parsing = PhotoReference(FACES / "obama.jpg", finder).fixed(1024)
    covered = photos["obama.jpg"].copy()
    x0, y0, x1, y1 = card
    covered[y0:y1, x0:x1] = (40, 160, 40)
    face = finder.find(covered)[0]
    hidden = np.zeros(covered.shape[:2], np.uint8)
    hidden[y0:y1, x0:x1] = 1
    differ = []
    for alignment in (face.alignment, align_to_reference(face, covered, reference, parsing)):
        card_in_crop = cv2.warpAffine(hidden, alignment.matrix, (1024, 1024)) > 0
        face_pixels = (parsing > 0) & ~card_in_crop
        changed = np.abs(alignment.crop(covered).astype(int) - reference).sum(axis=2) > 60
        differ.append(changed[face_pixels].mean())
    assert differ[0] > 0.1 and differ[1] < 0.03, differ
