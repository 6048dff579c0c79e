"""FFHQ alignment: the crop worked out by hand, paste-back within one pixel on every test photo,
and the alignment sidecar."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from helpers import FACE_PHOTOS

from s3pot.core.errors import S3potInputError
from s3pot.frontend import mesh
from s3pot.frontend.align import Alignment, ffhq_quad, read_sidecar


def _points(eye_l, eye_r, mouth_l, mouth_r) -> np.ndarray:
    xy = np.zeros((mesh.NUM_LANDMARKS, 2))
    xy[list(mesh.RIGHT_EYE_CONTOUR)] = eye_l  # image left
    xy[list(mesh.LEFT_EYE_CONTOUR)] = eye_r
    xy[mesh.RIGHT_MOUTH_CORNER], xy[mesh.LEFT_MOUTH_CORNER] = mouth_l, mouth_r
    return xy


def test_ffhq_quad_by_hand():
    # eyes (40, 50) and (60, 50), mouth corners (42, 75) and (58, 75): eye_to_eye (20, 0),
    # eye_to_mouth (0, 25); x = (20, 0) - (-25, 0) = (45, 0), scaled to max(2 * 20, 1.8 * 25) = 45;
    # y = (0, 45); centre (50, 50) + 0.1 * (0, 25) = (50, 52.5).
    quad = ffhq_quad(_points((40, 50), (60, 50), (42, 75), (58, 75)))
    np.testing.assert_allclose(quad, [[5, 7.5], [5, 97.5], [95, 97.5], [95, 7.5]])
    alignment = Alignment.from_landmarks(_points((40, 50), (60, 50), (42, 75), (58, 75)), (120, 100), 180)
    np.testing.assert_allclose(alignment.to_crop(quad), [[0, 0], [0, 180], [180, 180], [180, 0]], atol=1e-4)
    assert alignment.scale == pytest.approx(2.0)


def test_ffhq_quad_follows_a_rotated_face():
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = [np.array(p, float) @ rotation.T for p in ((40, 50), (60, 50), (42, 75), (58, 75))]
    upright = ffhq_quad(_points((40, 50), (60, 50), (42, 75), (58, 75)))
    np.testing.assert_allclose(ffhq_quad(_points(*points)), upright @ rotation.T, atol=1e-9)


def _round_trip(alignment: Alignment, mask: np.ndarray) -> np.ndarray:
    """``mask`` taken into the crop the way an image is, thresholded, and pasted back."""
    crop = alignment.crop(np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2))[..., 0] >= 128
    return alignment.paste_mask(crop)


@pytest.mark.parametrize("name", list(FACE_PHOTOS))
def test_paste_back_is_within_one_pixel(name, found, photos):
    rgb = photos[name]
    for face in found[name]:
        # A synthetic mask: an ellipse and a rotated square on the face, kept inside the crop.
        mask = np.zeros(rgb.shape[:2], np.uint8)
        centre = face.landmarks.xy[4]
        size = face.detection.size
        cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(size / 4), int(size / 6)), 20, 0, 360, 1, -1)
        square = cv2.boxPoints(((centre[0] - size / 5, centre[1] - size / 5), (size / 5, size / 5), 35))
        cv2.fillPoly(mask, [np.round(square).astype(np.int32)], 1)
        mask = mask.astype(bool)
        back = _round_trip(face.alignment, mask)
        edge = mask ^ cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        band = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        off = (back ^ mask) & ~band
        assert not off.any(), f"{off.sum()} pixels more than one pixel from the mask's edge"
        assert (back ^ mask).sum() < 0.05 * mask.sum()
        ys, xs = np.nonzero(mask)
        ys2, xs2 = np.nonzero(back)
        assert abs(xs.mean() - xs2.mean()) < 0.5 and abs(ys.mean() - ys2.mean()) < 0.5


def test_crop_pastes_only_inside_the_photo(found, photos):
    face = found["two_people.jpg"][1]  # near the top edge: the crop reaches past the photo
    inside = face.alignment.inside()
    assert inside.shape == photos["two_people.jpg"].shape[:2]
    assert 0 < inside.mean() < 1
    everywhere = face.alignment.paste_mask(np.ones((1024, 1024), bool))
    assert np.array_equal(everywhere, inside)


def test_sidecar_round_trip_and_bad_sidecars(tmp_path, found):
    alignment = found["obama.jpg"][0].alignment
    path = tmp_path / "x_align.json"
    path.write_text(json.dumps(alignment.to_json(source="obama.jpg")))
    again, record = read_sidecar(path)
    np.testing.assert_array_equal(again.matrix, alignment.matrix)
    assert (again.size, again.source_size, record["source"]) == (1024, (1137, 910), "obama.jpg")
    for text, expected in (("{", "unreadable"), ('{"format": "other"}', "'other'"),
                           (json.dumps({**alignment.to_json(), "matrix": [[1, 2]]}), "2 x 3")):
        path.write_text(text)
        with pytest.raises(S3potInputError, match=expected):
            read_sidecar(path)
    with pytest.raises(S3potInputError, match="expected a 910x1137 photo, got 100x100"):
        alignment.crop(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(S3potInputError, match="expected a 1024x1024 mask"):
        alignment.paste_mask(np.zeros((10, 10), bool))


@pytest.mark.parametrize("field, value", [("size", 0), ("source_size", [0, 0]), ("source_size", [-5, 10]),
                                          ("matrix", [[0, 0, 1], [0, 0, 2]])])
def test_sidecars_with_impossible_sizes_are_refused(tmp_path, found, field, value):
    path = tmp_path / "x_align.json"
    path.write_text(json.dumps({**found["obama.jpg"][0].alignment.to_json(), field: value}))
    with pytest.raises(S3potInputError, match="expected positive sizes and an invertible matrix"):
        read_sidecar(path)


def test_a_resized_alignment_scales_the_crop(found, photos):
    alignment = found["obama.jpg"][0].alignment
    half = alignment.resized(512)
    crop, small = alignment.crop(photos["obama.jpg"]), half.crop(photos["obama.jpg"])
    assert small.shape == (512, 512, 3)
    shrunk = cv2.resize(crop, (512, 512), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - small).mean() < 4
