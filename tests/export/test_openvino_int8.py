"""`s3pot quantize` on the tiny export: NNCF's INT8 encoder, its record, the OpenVINO runner that
runs it, and the refusals (a stale or altered INT8 encoder, an error past tolerance, no NNCF)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import rel_l2
from s3pot.core.errors import MissingDependencyError
from s3pot.core.quantized import INT8_TOLERANCE, check_int8, int8_paths, int8_present
from s3pot.core.manifest import read_manifest
from s3pot.runtime.backends import ModelSpec, create_runner
from s3pot.runtime.cli import main
from s3pot.runtime.pipeline import Pipeline
from s3pot.runtime.preprocess import prepare_inputs

pytest.importorskip("openvino")
pytest.importorskip("nncf")

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
OBAMA = (DATA / "obama_face.jpg", DATA / "obama_face_ref.jpg", DATA / "obama_face_parsing_mask.npy")
CALIBRATION = Path(__file__).resolve().parents[2] / "export" / "calibration" / "biden.jpg"


def _copy(tiny_export_dir, tmp_path) -> Path:
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_export_dir, folder, ignore=shutil.ignore_patterns(".*", "openvino"))
    return folder


@pytest.fixture(scope="module")
def quantized(tiny_export_dir, tmp_path_factory):
    """The tiny export with its INT8 encoder, as `s3pot quantize` makes it (one calibration face)."""
    folder = _copy(tiny_export_dir, tmp_path_factory.mktemp("int8"))
    assert main(["quantize", "--model", str(folder), "--calibration", str(CALIBRATION)]) == 0
    return folder


def test_quantize_writes_the_ir_and_its_record(quantized):
    manifest = read_manifest(quantized)
    record = check_int8(quantized, manifest)
    assert record["source_sha256"] == manifest["graphs"]["encoder"]["fp32"]["sha256"]
    assert [c["name"] for c in record["calibration"]] == ["biden.jpg"]
    assert 0 < record["check"]["rel_l2"] <= INT8_TOLERANCE
    assert record["method"]["model_type"] == "transformer" and record["nncf_version"]
    assert sorted(record["files"]) == ["encoder.bin", "encoder.xml"]
    assert not list(int8_paths(quantized)["xml"].parent.glob(".quantize-*"))  # no scratch left


def test_int8_encoder_is_quantized_and_close_to_fp32(quantized):
    from s3pot.runtime.backends.openvino import cpu_precisions

    if "int8" not in cpu_precisions():
        pytest.skip("this CPU has no VNNI / AMX")
    pixels = prepare_inputs(*OBAMA).pixels[:1]  # a face it was not calibrated on
    with create_runner("openvino", ModelSpec(folder=quantized, precision="int8")) as int8, \
            create_runner("openvino", ModelSpec(folder=quantized)) as fp32:
        assert int8.info.precision == "int8" and int8.info.provider.startswith("CPU (int8 encoder")
        error = rel_l2(int8.encode(pixels), fp32.encode(pixels))
        assert 1e-4 < error < INT8_TOLERANCE  # really quantized, still close
        seg = Pipeline(int8).segment(*OBAMA)
        want = Pipeline(fp32).segment(*OBAMA)
    face = np.union1d(want.occlusion_tokens, want.face_tokens)
    assert np.array_equal(np.union1d(seg.occlusion_tokens, seg.face_tokens), face)  # same face set
    assert seg.occlusion.shape == want.occlusion.shape


def test_backend_auto_takes_openvino_for_int8(quantized):
    from s3pot.runtime.backends.auto import choose

    assert choose(ModelSpec(folder=quantized, precision="int8"))[0] == "openvino"


def _refusal(folder, capsys) -> str:
    code = main(["segment", "--backend", "openvino", "--precision", "int8", "--model", str(folder),
                 "--image", str(OBAMA[0]), "--reference", str(OBAMA[1]), "--parsing", str(OBAMA[2]),
                 "--out", str(folder.parent / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    return err


def test_missing_int8_encoder_says_how_to_make_it(tiny_export_dir, tmp_path, capsys):
    folder = _copy(tiny_export_dir, tmp_path)
    assert not int8_present(folder)
    assert f"s3pot quantize --model {folder}" in _refusal(folder, capsys)


@pytest.mark.parametrize("damage, message", [
    ("bin", "changed since it was quantized"),
    ("source", "expected it quantized from this folder's encoder.onnx"),
    ("record", "expected format 's3pot-openvino-int8'"),
])
def test_altered_or_stale_int8_encoder_is_refused(quantized, tmp_path, capsys, damage, message):
    folder = tmp_path / "q"
    shutil.copytree(quantized, folder, ignore=shutil.ignore_patterns(".*"))
    paths = int8_paths(folder)
    record = json.loads(paths["record"].read_text())
    if damage == "bin":
        with open(paths["bin"], "ab") as handle:
            handle.write(b"\0")
    elif damage == "source":  # as if the folder had been exported again since
        record["source_sha256"] = "0" * 64
        paths["record"].write_text(json.dumps(record))
    else:
        paths["record"].write_text(json.dumps({**record, "format": "something-else"}))
    err = _refusal(folder, capsys)
    assert message in err and f"s3pot quantize --model {folder}" in err


def test_error_past_tolerance_writes_nothing(tiny_export_dir, tmp_path, monkeypatch, capsys):
    from s3pot.export import openvino_int8

    folder = _copy(tiny_export_dir, tmp_path)
    monkeypatch.setattr(openvino_int8, "INT8_TOLERANCE", 1e-9)
    code = main(["quantize", "--model", str(folder), "--calibration", str(CALIBRATION)])
    err = capsys.readouterr().err
    assert code == 2 and "expected relative L2 error <= 1e-09" in err and "nothing was written" in err
    assert not int8_paths(folder)["xml"].parent.exists() or not any(int8_paths(folder)["xml"].parent.iterdir())


def test_bad_calibration_image_is_one_clear_error(tiny_export_dir, tmp_path, capsys):
    folder = _copy(tiny_export_dir, tmp_path)
    bad = tmp_path / "face.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["quantize", "--model", str(folder), "--calibration", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err


def test_without_nncf_the_install_hint(tiny_export_dir, tmp_path, monkeypatch):
    from s3pot.export.openvino_int8 import quantize_encoder

    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now fails
    with pytest.raises(MissingDependencyError, match="pip install nncf"):
        quantize_encoder(_copy(tiny_export_dir, tmp_path))


def test_bench_lists_int8_only_where_it_can_run(monkeypatch, tmp_path, quantized):
    from s3pot.benchmarks import bench
    from s3pot.runtime.backends import openvino

    monkeypatch.setattr(openvino, "cpu_precisions", lambda core=None: ["fp32", "bf16", "int8"])
    monkeypatch.setattr(bench, "installed", lambda module: module != "nncf")
    names = lambda folder: [p.name for p in bench.available_paths(False, folder)]  # noqa: E731
    assert "openvino int8" not in names(tmp_path)  # no NNCF, nothing quantized
    assert "openvino int8" in names(quantized)  # quantized already
    monkeypatch.setattr(openvino, "cpu_precisions", lambda core=None: ["fp32"])
    assert "openvino int8" not in names(quantized)  # no VNNI


def test_doctor_reports_the_int8_encoder(quantized, tmp_path, capsys):
    assert main(["doctor", "--model", str(quantized)]) in (0, 1)
    row = next(line for line in capsys.readouterr().out.splitlines() if "encoder int8" in line)
    assert "ok" in row and "NNCF" in row
    folder = tmp_path / "q"
    shutil.copytree(quantized, folder, ignore=shutil.ignore_patterns(".*"))
    int8_paths(folder)["xml"].write_text("<net/>")
    main(["doctor", "--model", str(folder)])
    row = next(line for line in capsys.readouterr().out.splitlines() if "encoder int8" in line)
    assert "no" in row and "changed since it was quantized" in row


def test_unwritable_int8_folder_is_one_clear_error(tiny_export_dir, tmp_path, capsys):
    """A file where the INT8 folder goes (as a read-only folder would, for any user, root too)."""
    folder = _copy(tiny_export_dir, tmp_path)
    (folder / "openvino").write_text("in the way")
    code = main(["quantize", "--model", str(folder), "--calibration", str(CALIBRATION)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "expected a writable export folder" in err
    assert (folder / "openvino").read_text() == "in the way"
