"""The three reference sources: a photo aligned by landmarks, an ONNX generator, files."""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from helpers import FACES
from onnx import TensorProto, helper

from s3pot.core.errors import S3potInputError
from s3pot.frontend.faces import NoFaceError
from s3pot.frontend.references import FileReference, GeneratorReference, PhotoReference


def test_a_photo_aligned_to_itself_is_the_crop(finder, found, photos):
    face = found["obama.jpg"][0]
    reference = PhotoReference(FACES / "obama.jpg", finder)
    rgb, labels = reference.for_face(photos["obama.jpg"], face)
    crop = face.crop(photos["obama.jpg"])
    assert rgb.shape == crop.shape and labels.shape == crop.shape[:2]
    assert np.abs(rgb.astype(int) - crop).mean() < 3
    own = face.parsing()
    assert ((labels > 0) & (own > 0)).sum() / ((labels > 0) | (own > 0)).sum() > 0.97
    fixed_rgb, fixed_labels = reference.fixed(1024)
    assert np.abs(fixed_rgb.astype(int) - crop).mean() < 3


def test_a_photo_of_the_person_elsewhere_lands_on_the_target(finder, found, photos, tmp_path):
    # The same face cut from obama.jpg, shrunk and rotated: aligned back onto obama.jpg's crop.
    rgb = photos["obama.jpg"]
    turn = cv2.getRotationMatrix2D((455, 300), 12, 0.6)
    moved = cv2.warpAffine(rgb, turn, (700, 700), borderMode=cv2.BORDER_REFLECT_101)
    path = tmp_path / "moved.png"
    cv2.imwrite(str(path), cv2.cvtColor(moved, cv2.COLOR_RGB2BGR))
    reference = PhotoReference(path, finder)
    face = found["obama.jpg"][0]
    ref, _ = reference.for_face(rgb, face)
    crop = face.crop(rgb)
    skin = face.parsing() > 0
    assert np.abs(ref.astype(int) - crop)[skin].mean() < 12


def test_a_reference_photo_without_a_face_is_named(finder, tmp_path):
    path = tmp_path / "wall.png"
    cv2.imwrite(str(path), np.full((300, 300, 3), 90, np.uint8))
    with pytest.raises(NoFaceError, match=f"reference photo '{path}': expected a photo with a face"):
        PhotoReference(path, finder)


def _generator(path, *, parsing_shape, parsing_type=TensorProto.INT64, image_hw=("H", "W"),
               one_hot=False):
    """output = image where the parsing marks a face part, 0 (mid-grey) elsewhere."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *image_hw])
    parsing = helper.make_tensor_value_info("parsing", parsing_type, parsing_shape)
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, *image_hw])
    if one_hot:  # face = 1 - background channel
        nodes = [helper.make_node("Slice", ["parsing", "s0", "s1", "ax"], ["bg"]),
                 helper.make_node("Sub", ["one", "bg"], ["mask"])]
        inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s0", 0), ("s1", 1), ("ax", 1))]
        inits.append(helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]))
    else:
        nodes = [helper.make_node("Cast", ["parsing"], ["labels"], to=TensorProto.FLOAT),
                 helper.make_node("Greater", ["labels", "zero"], ["face"]),
                 helper.make_node("Cast", ["face"], ["mask"], to=TensorProto.FLOAT)]
        inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    nodes.append(helper.make_node("Mul", ["image", "mask"], ["out"]))
    graph = helper.make_graph(nodes, "generator", [image, parsing], [out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize("parsing_shape", [[1, "H", "W"], [1, 1, "H", "W"]])
def test_generator_gets_the_crop_and_its_parsing(tmp_path, found, photos, parsing_shape):
    face = found["obama.jpg"][0]
    source = GeneratorReference(_generator(tmp_path / "g.onnx", parsing_shape=parsing_shape), device="cpu")
    rgb, labels = source.for_face(photos["obama.jpg"], face)
    crop, own = face.crop(photos["obama.jpg"]), face.parsing()
    np.testing.assert_array_equal(labels, own)
    assert np.abs(rgb[own > 0].astype(int) - crop[own > 0]).max() <= 1  # -1..1 and back
    assert (rgb[own == 0] == 128).all()  # 0 in -1..1 is 127.5, rounded to even


def test_generator_with_a_fixed_size_and_one_hot_parsing(tmp_path, found, photos):
    face = found["obama.jpg"][0]
    path = _generator(tmp_path / "g.onnx", parsing_shape=[1, 12, 256, 256], image_hw=(256, 256),
                      parsing_type=TensorProto.FLOAT, one_hot=True)
    rgb, labels = GeneratorReference(path, device="cpu", value_range="0..1").for_face(
        photos["obama.jpg"], face)
    assert rgb.shape == (1024, 1024, 3)
    small = cv2.resize(face.parsing(), (256, 256), interpolation=cv2.INTER_NEAREST)
    back = cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_NEAREST)
    # Background painted black (0 in 0..1), resized back; the upsampling blurs the edges.
    far = cv2.erode((back == 0).astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    assert far.mean() > 0.5 and rgb[far].max() <= 1 and rgb[face.parsing() > 0].mean() > 60


def test_generators_that_break_the_contract_are_refused(tmp_path, found, photos):
    path = tmp_path / "one_input.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    with pytest.raises(S3potInputError, match="expected 2 inputs .image, parsing. and an output, got 1 inputs"):
        GeneratorReference(path, device="cpu")
    bad = tmp_path / "g5.onnx"
    parsing = helper.make_tensor_value_info("parsing", TensorProto.FLOAT, [1, 5, 8, 8])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                                  [x, parsing], [y]),
                                opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(bad))
    with pytest.raises(S3potInputError, match="N x 12 x H x W, got"):
        GeneratorReference(bad, device="cpu")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph")
    with pytest.raises(S3potInputError, match=f"generator '{junk}': expected an ONNX graph"):
        GeneratorReference(junk, device="cpu")


def test_files_are_resized_and_a_non_square_reference_refused(tmp_path):
    ref, labels = tmp_path / "ref.png", tmp_path / "labels.npy"
    cv2.imwrite(str(ref), np.full((512, 512, 3), 200, np.uint8))
    np.save(labels, np.full((512, 512), 6, np.uint8))
    rgb, parsing = FileReference(ref, labels).fixed(1024)
    assert rgb.shape == (1024, 1024, 3) and (parsing == 6).all()
    cv2.imwrite(str(ref), np.full((512, 300, 3), 200, np.uint8))
    with pytest.raises(S3potInputError, match="same aspect ratio"):
        FileReference(ref, labels)
