"""Atomic files and folders honour the umask and leave nothing half-written; a manifest refuses
missing or altered files with their names."""
from __future__ import annotations

import json
import os

import pytest

from s3pot.core.atomic import atomic_directory, write_bytes_atomic
from s3pot.core.errors import ExportError, S3potInputError
from s3pot.core.io_table import table_json
from s3pot.core.manifest import (MANIFEST_NAME, graph_entry, read_manifest, sha256_file,
                                 verify_graph, write_manifest)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_get_the_umask_mode_not_mkstemps_private_one(tmp_path, umask_022):
    path = write_bytes_atomic(tmp_path / "a" / "mask.png", b"x")
    assert path.read_bytes() == b"x"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in path.parent.iterdir()] == ["mask.png"]  # no temporary left


def test_a_folder_appears_only_when_complete(tmp_path, umask_022):
    target = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "encoder.onnx").write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "encoder.onnx").write_bytes(b"whole")
    assert (target / "encoder.onnx").read_bytes() == b"whole"
    assert oct(target.stat().st_mode & 0o777) == oct(0o755)


def test_a_non_empty_folder_is_replaced_only_with_overwrite_and_only_when_complete(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.onnx").write_bytes(b"old")
    with pytest.raises(S3potInputError, match="pass --overwrite"):
        with atomic_directory(target):
            pass
    with pytest.raises(ValueError):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "new.onnx").write_bytes(b"new")
            raise ValueError("failed half way")
    assert [p.name for p in target.iterdir()] == ["old.onnx"]  # the old export is intact
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.onnx").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["new.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def _folder(tmp_path):
    (tmp_path / "encoder.onnx").write_bytes(b"graph")
    (tmp_path / "encoder.onnx.data").write_bytes(b"weights")
    record = {"file": "encoder.onnx", "sha256": sha256_file(tmp_path / "encoder.onnx"),
              "external_data": [{"file": "encoder.onnx.data",
                                 "sha256": sha256_file(tmp_path / "encoder.onnx.data")}]}
    write_manifest(tmp_path, {"variant": "tiny", "normalization": "sam", "face_set": [1],
                              "weights": {"kind": "random"}, "opset": 17, "ir_version": 10,
                              "io": table_json(), "graphs": {"encoder": {"fp32": record}}})
    return tmp_path


def test_verified_graph_path(tmp_path):
    folder = _folder(tmp_path)
    assert verify_graph(folder, read_manifest(folder), "encoder") == folder / "encoder.onnx"


def test_altered_and_missing_files_are_named(tmp_path):
    folder = _folder(tmp_path)
    manifest = read_manifest(folder)
    (folder / "encoder.onnx.data").write_bytes(b"other weights")
    with pytest.raises(ExportError, match=r"encoder.onnx.data': expected sha256 .* got .*export again"):
        verify_graph(folder, manifest, "encoder")
    (folder / "encoder.onnx").unlink()
    with pytest.raises(ExportError, match="expected encoder.onnx .* got no such file"):
        verify_graph(folder, manifest, "encoder")
    with pytest.raises(ExportError, match=r"expected a fp16 graph of stage 'encoder', got only \['fp32'\]"):
        graph_entry(manifest, "encoder", "fp16")
    with pytest.raises(ExportError, match=r"expected a graph of stage 'sa', got only stages \['encoder'\]"):
        graph_entry(manifest, "sa")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format="other"), "expected format 's3pot-export', got 'other'"),
    (lambda m: m.update(version=99), "expected version 1, got 99"),
    (lambda m: m.pop("graphs"), r"missing \['graphs'\]"),
    (lambda m: m["io"]["encoder"]["inputs"][0].update(dtype="float16"), "IO table differs"),
])
def test_a_foreign_or_stale_manifest_is_refused(tmp_path, edit, message):
    folder = _folder(tmp_path)
    data = json.loads((folder / MANIFEST_NAME).read_text())
    edit(data)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ExportError, match=message):
        read_manifest(folder)


def test_a_folder_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(ExportError, match="expected manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ExportError, match="expected JSON"):
        read_manifest(tmp_path)
