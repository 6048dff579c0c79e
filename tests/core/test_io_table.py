"""The stage IO table: the only place tensor names are written, shapes built from the constants,
feeds checked by name, dtype and shape."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from s3pot.core import io_table
from s3pot.core.errors import S3potInputError
from s3pot.core.io_table import (DECODER, ENCODER, FE, NUM_POINTS, POINT_COORDS, POINT_LABELS, SA,
                                 STAGES, TENSOR_NAMES, TYPICAL_POINTS, get_stage, table_json)

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("core", "export", "runtime", "kernels", "models", "benchmarks", "tests")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _literal_names(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = _docstring_nodes(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in TENSOR_NAMES and id(node) not in docstrings]


def test_tensor_names_are_written_only_in_the_io_table():
    table = (ROOT / "core" / "io_table.py").resolve()  # this checkout's, wherever s3pot is installed
    assert Path(io_table.__file__).name == table.name
    offenders = []
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.resolve() == table or "__pycache__" in path.parts:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line}: {name!r}"
                          for line, name in _literal_names(path)]
    assert not offenders, "import the name from s3pot.core.io_table instead:\n" + "\n".join(offenders)


def test_the_literal_scan_finds_a_name(tmp_path):
    """The scan above can fail: a stray literal is found, a docstring mention is not."""
    stray = tmp_path / "stray.py"
    name = sorted(TENSOR_NAMES)[0]
    stray.write_text(f'"""mentions {name}"""\nfeeds = {{"{name}": 1}}\n')
    assert _literal_names(stray) == [(2, name)]


def test_typical_points_is_the_face_token_count_of_the_aligned_test_face():
    from s3pot.core.spec import PAPER_FACE_SET, face_token_mask
    from s3pot.runtime.io import load_parsing
    from s3pot.runtime.preprocess import resize_parsing

    parsing = load_parsing(ROOT / "benchmarks" / "data" / "obama_face_parsing_mask.npy")
    assert int(face_token_mask(resize_parsing(parsing), PAPER_FACE_SET).sum()) == TYPICAL_POINTS


def test_shapes_and_profiles_come_from_the_constants():
    assert ENCODER.profile() == {ENCODER.input_names[0]: ((1, 3, 1024, 1024), (2, 3, 1024, 1024),
                                                          (8, 3, 1024, 1024))}
    assert SA.profile()[POINT_COORDS] == ((1, 1, 2), (1, TYPICAL_POINTS, 2), (1, 4096, 2))
    assert DECODER.profile()[SA.output_names[0]] == ((1, 2, 256), (1, TYPICAL_POINTS + 1, 256),
                                                     (1, 4097, 256))
    assert FE.output(FE.output_names[0]).shape_at("max") == (2, 4096, 256)  # one pair
    assert ENCODER.output(ENCODER.output_names[0]).shape_at("max") == (8, 256, 64, 64)
    assert SA.dynamic_axes() == {POINT_COORDS: {1: NUM_POINTS.name}, POINT_LABELS: {1: NUM_POINTS.name},
                                 SA.output_names[0]: {1: NUM_POINTS.plus(1).name}}
    assert list(STAGES) == ["encoder", "fe", "sa", "decoder"]
    # one tensor flows between stages under one name
    assert ENCODER.output_names[0] == FE.input_names[0] == DECODER.input_names[0]
    assert SA.output_names == [DECODER.input_names[1]]


def test_table_json_round_trips():
    assert json.loads(json.dumps(table_json())) == table_json()


def test_check_feeds_accepts_the_table_shapes():
    feeds = {POINT_COORDS: np.zeros((1, 7, 2), np.float32), POINT_LABELS: np.ones((1, 7), np.float32)}
    checked = SA.check_feeds(feeds)
    assert set(checked) == {POINT_COORDS, POINT_LABELS}


@pytest.mark.parametrize("feeds, message", [
    ({POINT_COORDS: np.zeros((1, 7, 2), np.float32)}, r"missing \['point_labels'\]"),
    ({POINT_COORDS: np.zeros((1, 7, 2), np.float64), POINT_LABELS: np.ones((1, 7), np.float32)},
     "expected dtype float32, got float64"),
    ({POINT_COORDS: np.zeros((1, 7, 3), np.float32), POINT_LABELS: np.ones((1, 7), np.float32)},
     r"expected shape \(1, num_points in 1..4096, 2\), got \(1, 7, 3\)"),
    ({POINT_COORDS: np.zeros((1, 4097, 2), np.float32), POINT_LABELS: np.ones((1, 4097), np.float32)},
     "num_points in 1..4096"),
    ({POINT_COORDS: np.zeros((1, 7, 2), np.float32), POINT_LABELS: np.ones((1, 6), np.float32)},
     "axis 'num_points' is 7 in 'point_coords' but 6 in 'point_labels'"),
    ({POINT_COORDS: np.zeros((1, 7, 2), np.float32), POINT_LABELS: np.ones((1, 7), np.float32),
      "extra": np.zeros(1)}, r"unexpected \['extra'\]"),
])
def test_check_feeds_names_the_tensor_and_what_was_expected(feeds, message):
    with pytest.raises(S3potInputError, match=message):
        SA.check_feeds(feeds)


def test_unknown_stage_lists_the_valid_ones():
    with pytest.raises(S3potInputError, match="expected one of encoder, fe, sa, decoder"):
        get_stage("neck")


def test_core_imports_nothing_heavier_than_numpy():
    import subprocess
    import sys

    code = ("import sys; import s3pot.core.io_table, s3pot.core.manifest, s3pot.core.atomic, "
            "s3pot.core.spec, s3pot.core.errors; "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'cv2', 'numba', 'tensorrt') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
