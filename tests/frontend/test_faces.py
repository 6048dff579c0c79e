"""Detection, mesh and landmark parsing on the five real test photos (RGBA, small and two-face
included) and skimage's astronaut."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import FACE_PHOTOS as PHOTOS

from s3pot.core.spec import PAPER_FACE_SET, face_token_mask
from s3pot.frontend import detect, mesh
from s3pot.frontend.parsing import DRAWN_LABELS, LABEL


@pytest.mark.parametrize("name", list(detect.MODELS))
def test_anchor_grid_matches_the_models_outputs(name):
    detector = detect.FaceDetector(name)
    (regressors, scores) = detector.model(np.zeros((detector.size, detector.size, 3), np.float32))
    assert regressors.shape[1] == scores.shape[1] == len(detector.anchors)
    assert detector.anchors.min() > 0 and detector.anchors.max() < 1


def test_weighted_nms_merges_overlaps_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    keypoints = boxes[:, None, :2].repeat(6, axis=1)
    merged = detect.weighted_nms(boxes, keypoints, np.array([0.6, 0.9, 0.7]))
    assert len(merged) == 2
    box, kps, score = merged[0]
    np.testing.assert_allclose(box, [0.6, 0, 10.6, 10])  # (0.6 * 0 + 0.9 * 1) / 1.5 = 0.6
    np.testing.assert_allclose(kps[0], [0.6, 0])
    assert score == 0.9 and merged[1][2] == 0.7


@pytest.mark.parametrize("name", list(PHOTOS))
def test_faces_found_with_landmarks_on_the_face(name, found, photos):
    faces = found[name]
    assert len(faces) == PHOTOS[name]
    height, width = photos[name].shape[:2]
    for face in faces:
        x0, y0, x1, y1 = face.detection.box
        pad = 0.25 * face.detection.size
        xy = face.landmarks.xy
        assert face.landmarks.presence > 0.9
        assert (xy[:, 0] > x0 - pad).all() and (xy[:, 0] < x1 + pad).all()
        assert (xy[:, 1] > y0 - pad).all() and (xy[:, 1] < y1 + pad).all()
        assert (xy >= -pad).all() and (xy[:, 0] < width + pad).all() and (xy[:, 1] < height + pad).all()
        # The subject's right eye is on the image's left in these frontal photos.
        assert xy[list(mesh.RIGHT_EYE_CONTOUR), 0].mean() < xy[list(mesh.LEFT_EYE_CONTOUR), 0].mean()
    if len(faces) == 2:  # largest first
        assert faces[0].detection.size >= faces[1].detection.size


@pytest.mark.parametrize("name", list(PHOTOS))
def test_parsing_has_every_face_part_and_face_tokens(name, found):
    for face in found[name]:
        labels = face.parsing()
        assert labels.shape == (face.alignment.size, face.alignment.size)
        counts = np.bincount(labels.ravel(), minlength=12)
        for part in ("skin", "nose", "eyebrows", "eyes", "lip"):
            assert counts[LABEL[part]] > 0, part
        assert set(np.flatnonzero(counts)) <= {0, *DRAWN_LABELS}
        # The aligned face fills the crop's middle: its centre is skin or nose, its corner background.
        centre = labels[labels.shape[0] // 2, labels.shape[1] // 2]
        assert centre in (LABEL["skin"], LABEL["nose"]) and labels[0, 0] == LABEL["background"]
        assert face_token_mask(labels, PAPER_FACE_SET).sum() > 500


def test_parts_sit_where_the_landmarks_put_them(found):
    face = found["obama.jpg"][0]
    labels, xy = face.parsing(), face.crop_landmarks
    for contour, part in ((mesh.RIGHT_EYE_CONTOUR, "eyes"), (mesh.LEFT_EYE_CONTOUR, "eyes")):
        x, y = np.round(xy[list(contour)].mean(axis=0)).astype(int)
        assert labels[y, x] == LABEL[part]
    x, y = np.round(xy[4]).astype(int)  # the nose tip
    assert labels[y, x] == LABEL["nose"]


def test_astronaut_and_a_photo_without_a_face(finder):
    from skimage import data

    assert len(finder.find(data.astronaut())) == 1
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert finder.find(noise) == [] and finder.find(np.full((300, 300, 3), 128, np.uint8)) == []


def test_auto_falls_back_to_the_short_range_model_on_a_close_covered_face(photos):
    import cv2

    # obama.jpg cropped close with a card over the mouth: the full-range model scores it 0.52,
    # the short-range one 0.85; at a threshold of 0.8 only the fallback finds it.
    bgr = np.ascontiguousarray(photos["obama.jpg"][100:500, 340:740, ::-1])
    frame = cv2.resize(bgr, (320, 320), interpolation=cv2.INTER_AREA)
    cv2.rectangle(frame, (130, 200), (250, 290), (40, 160, 40), -1)
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    assert detect.FaceDetector("full", min_score=0.8)(rgb) == []
    assert len(detect.FaceDetector("short", min_score=0.8)(rgb)) == 1
    assert len(detect.create_detector("auto", min_score=0.8)(rgb)) == 1


def test_unknown_detector_and_bad_arrays_are_named(finder):
    from s3pot.core.errors import S3potInputError

    with pytest.raises(S3potInputError, match="expected one of auto, full, short, got 'huge'"):
        detect.create_detector("huge")
    with pytest.raises(S3potInputError, match=r"expected H x W x 3 uint8 RGB, got \(10, 10\)"):
        finder.find(np.zeros((10, 10), np.uint8))
