"""`s3pot segment --backend ... --model DIR` and `s3pot doctor`: parity with the torch backend,
the automatic choice, and one clear error (exit 2, nothing written, no model loaded) for every
bad export folder and input."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from helpers import TINY_EXPORT_SEED, run_both_backends
from s3pot.core.manifest import MANIFEST_NAME
from s3pot.runtime.cli import EXIT_USER_ERROR, main

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
SINGLE = ["--image", str(DATA / "obama_face.jpg"), "--reference", str(DATA / "obama_face_ref.jpg"),
          "--parsing", str(DATA / "obama_face_parsing_mask.npy")]


def test_onnxruntime_cli_matches_torch_cli(tiny_export_dir, tmp_path):
    got = run_both_backends(tiny_export_dir, ["--variant", "tiny", "--random-weights", "--seed",
                                              str(TINY_EXPORT_SEED)], tmp_path)
    assert got["same_prompts"] and got["iou"] >= 0.999, got


def test_auto_picks_onnxruntime_for_an_export_folder_and_says_why(tiny_export_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", *SINGLE, "--model", str(tiny_export_dir), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "backend onnxruntime (not tensorrt: no fp32 engines" in err
    assert "tiny on onnxruntime" in err and "CPUExecutionProvider" in err
    summary = json.loads((out / "obama_face_prompts.json").read_text())
    assert summary["weights"] == f"export '{tiny_export_dir}'"
    assert {"encoder", "fe", "prompt_selection", "sa", "decoder"} <= set(summary["timings_s"])


def test_onnxruntime_cli_never_imports_torch(tiny_export_dir, tmp_path):
    import subprocess

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'onnx', 'tensorrt', 'pycuda', 'cuda'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from s3pot.runtime.cli import main\n"
            f"code = main(['segment', *{SINGLE!r}, '--backend', 'onnxruntime', '--model', "
            f"{str(tiny_export_dir)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
            "assert 'torch' not in sys.modules\n"
            "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _refused(args, tmp_path, capsys, match: str) -> None:
    out = tmp_path / "refused"
    assert main(["segment", *args, "--out", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("s3pot: error: ") and match in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.fixture
def copy(tiny_export_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_export_dir, folder, ignore=shutil.ignore_patterns(".onnxruntime"))
    return folder


def test_export_folder_with_a_missing_file(copy, tmp_path, capsys):
    (copy / "decoder.onnx").unlink()
    _refused([*SINGLE, "--backend", "onnxruntime", "--model", str(copy)], tmp_path, capsys,
             "expected decoder.onnx (listed in manifest.json), got no such file")


def test_export_folder_with_a_changed_graph(copy, tmp_path, capsys):
    with open(copy / "encoder.onnx", "ab") as handle:
        handle.write(b"\0")
    _refused([*SINGLE, "--model", str(copy)], tmp_path, capsys, "expected sha256")


def test_export_folder_of_another_variant(copy, tmp_path, capsys):
    _refused([*SINGLE, "--model", str(copy), "--variant", "vit_b"], tmp_path, capsys,
             "expected variant 'vit_b', got 'tiny'")


def test_folder_without_manifest(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _refused([*SINGLE, "--model", str(tmp_path / "empty")], tmp_path, capsys,
             "expected manifest.json")


@pytest.mark.parametrize("extra,match", [
    (["--random-weights"], "expected no --random-weights"),
    (["--backend", "torch"], "got an export folder"),
    (["--precision", "bf16", "--backend", "onnxruntime"], "expected precision fp32 or fp16"),
    (["--threads", "-1"], "--threads: expected 0 or more"),
])
def test_contradicting_options(tiny_export_dir, tmp_path, capsys, extra, match):
    _refused([*SINGLE, "--model", str(tiny_export_dir), *extra], tmp_path, capsys, match)


def test_onnxruntime_without_model_folder(tmp_path, capsys):
    _refused([*SINGLE, "--backend", "onnxruntime"], tmp_path, capsys,
             "expected an export folder (--model DIR")


def test_corrupt_image_is_found_before_the_model_loads(copy, tmp_path, capsys, monkeypatch):
    """Inputs are decoded before any model is loaded: the export folder here is broken too, and
    the image is what gets named."""
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes((DATA / "obama_face.jpg").read_bytes()[:2000])
    (copy / MANIFEST_NAME).unlink()
    args = ["--image", str(bad), *SINGLE[2:], "--model", str(copy)]
    _refused(args, tmp_path, capsys, "corrupt.jpg")


def test_unwritable_out_is_found_before_the_model_loads(tiny_export_dir, tmp_path, capsys,
                                                       monkeypatch):
    import s3pot.runtime.cli.segment as segment

    loaded = []
    monkeypatch.setattr(segment, "build_pipeline", lambda args: loaded.append(args))
    monkeypatch.setattr(segment.os, "access", lambda path, mode: False)  # root ignores chmod
    out = tmp_path / "locked" / "out"
    assert main(["segment", *SINGLE, "--model", str(tiny_export_dir), "--out", str(out)]) == EXIT_USER_ERROR
    assert "expected a writable folder" in capsys.readouterr().err
    assert not loaded and not out.exists()


def test_doctor_reports_the_machine_and_an_export_folder(copy, capsys):
    assert main(["doctor", "--model", str(copy)]) == 0
    table = capsys.readouterr().out
    for row in ("GPU", "TensorRT", "ONNX Runtime", "Front end", "PyTorch", "Numba kernels",
                "graphs fp32", "graphs fp16"):
        assert row in table, table
    assert "tiny, four stages verified" in table
    (copy / "sa.onnx").write_bytes(b"changed")
    (copy / "sa.fp16.onnx").unlink()
    assert main(["doctor", "--model", str(copy)]) == 1
    table = capsys.readouterr().out
    assert "expected sha256" in table and "expected sa.fp16.onnx" in table


def test_outputs_honour_the_umask(tiny_export_dir, tmp_path):
    import os

    old = os.umask(0o027)
    try:
        assert main(["segment", *SINGLE, "--model", str(tiny_export_dir), "--out",
                     str(tmp_path / "out")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert set(modes.values()) == {0o640}, modes


def test_first_run_says_the_numba_kernels_compile(tiny_export_dir, tmp_path, capsys, monkeypatch):
    from s3pot.kernels import numba_cpu

    monkeypatch.setattr(numba_cpu, "cache_is_warm", lambda: False)
    assert main(["segment", *SINGLE, "--model", str(tiny_export_dir), "--out", str(tmp_path / "o")]) == 0
    assert "compiling the Numba prompt-selection kernels (first run" in capsys.readouterr().err
    monkeypatch.setattr(numba_cpu, "cache_is_warm", lambda: True)
    assert main(["segment", *SINGLE, "--model", str(tiny_export_dir), "--out", str(tmp_path / "p")]) == 0
    assert "compiling" not in capsys.readouterr().err
