"""``s3pot segment`` end to end on the tiny variant, and one clear error per user mistake."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import astronaut_sample
from s3pot.runtime.cli import EXIT_USER_ERROR, main

TINY = ["--variant", "tiny", "--random-weights", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    image, reference, parsing = astronaut_sample()
    cv2.imwrite(str(root / "face.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "face_ref.png"), cv2.cvtColor(reference, cv2.COLOR_RGB2BGR))
    np.save(root / "face_parsing_mask.npy", parsing)
    return root


def _single(files: Path) -> list[str]:
    return ["--image", str(files / "face.jpg"), "--reference", str(files / "face_ref.png"),
            "--parsing", str(files / "face_parsing_mask.npy")]


def test_segment_writes_masks_at_input_size(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", *_single(files), "--out", str(out), "--save-vis", *TINY]) == 0
    occ = cv2.imread(str(out / "face_occlusion.png"), cv2.IMREAD_UNCHANGED)
    vis_face = cv2.imread(str(out / "face_visible_face.png"), cv2.IMREAD_UNCHANGED)
    assert occ.shape == vis_face.shape == (512, 512)
    assert set(np.unique(occ)) <= {0, 255}
    assert cv2.imread(str(out / "face_vis.jpg")).shape == (512, 512, 3)
    summary = json.loads((out / "face_prompts.json").read_text())
    assert summary["weights"].startswith("RANDOM")
    assert "weights: RANDOM" in capsys.readouterr().err


def test_directory_mode_with_progress(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", "--input-dir", str(files), "--out", str(out), *TINY]) == 0
    assert (out / "face_occlusion.png").is_file()
    assert "1 of 1 samples" in capsys.readouterr().out or (out / "face_occlusion.png").is_file()


def _user_error(argv, tmp_path, capsys, match: str):
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    lines = [l for l in err.splitlines() if l.startswith("s3pot: error:")]
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir()), "no partial output"


def _replace_input(files, index: int, path) -> list[str]:
    argv = _single(files)
    argv[index] = str(path)
    return ["segment", *argv, *TINY]


IMAGE, PARSING = 1, 5  # positions of the --image and --parsing values in _single()


def _corrupt_jpeg(tmp_path):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return path


def _parsing(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


@pytest.mark.parametrize("index,make,match", [
    (IMAGE, lambda d: d / "absent.jpg", "absent.jpg"),
    (IMAGE, _corrupt_jpeg, "corrupt.jpg"),
    (PARSING, lambda d: _parsing(d, "wrong_parsing_mask.npy", np.full((100, 80), 6, np.uint8)), "(100, 80)"),
    (PARSING, lambda d: _parsing(d, "noface_parsing_mask.npy", np.full((512, 512), 4, np.uint8)), "face"),
], ids=["missing-image", "corrupt-image", "parsing-wrong-shape", "parsing-without-face"])
def test_bad_input_file(files, tmp_path, capsys, index, make, match):
    _user_error(_replace_input(files, index, make(tmp_path)), tmp_path, capsys, match)


def test_checkpoint_of_another_variant(files, tmp_path, capsys):
    from s3pot.models import build_s3pot
    ckpt = tmp_path / "other.pth"
    model = build_s3pot("tiny_mobile", random_weights=True)
    torch.save({f"{p}.{k}": v for p, m in model.sam_modules().items()
                for k, v in m.state_dict().items()}, ckpt)
    _user_error(["segment", *_single(files), "--variant", "tiny", "--checkpoint", str(ckpt)],
                tmp_path, capsys, "expected the tiny SAM parameters")


def test_adapter_of_another_variant(files, tmp_path, capsys):
    from s3pot.models import build_s3pot, save_adapter
    adapter = save_adapter(tmp_path / "mobile_adapter.pt", build_s3pot("tiny_mobile", random_weights=True),
                           variant="tiny_mobile", normalization="sam", face_set="paper")
    _user_error(["segment", *_single(files), *TINY, "--adapter", str(adapter)],
                tmp_path, capsys, "trained for variant 'tiny_mobile'")


def test_adapter_contradicting_normalization(files, tmp_path, capsys):
    from s3pot.models import build_s3pot, save_adapter
    adapter = save_adapter(tmp_path / "a.pt", build_s3pot("tiny", random_weights=True),
                           variant="tiny", normalization="unit", face_set="authors")
    _user_error(["segment", *_single(files), *TINY, "--adapter", str(adapter), "--normalization", "sam"],
                tmp_path, capsys, "trained with 'unit'")


def test_console_script_exit_code_and_no_traceback(files, tmp_path):
    """The installed ``s3pot`` entry point, as a user runs it."""
    exe = Path(sys.executable).with_name("s3pot")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "s3pot.runtime.cli"]
    argv = _single(files)
    argv[5] = str(files / "missing_parsing_mask.npy")
    proc = subprocess.run([*cmd, "segment", *argv, "--out", str(tmp_path / "o"), *TINY],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("s3pot: error: parsing mask")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_out_that_is_a_file(files, tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    code = main(["segment", *_single(files), "--out", str(target), *TINY])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and "expected a folder, got an existing file" in err
    assert "Traceback" not in err and target.read_text() == "x"


def test_out_equal_to_input_dir_is_refused(files, capsys):
    assert main(["segment", "--input-dir", str(files), "--out", str(files), *TINY]) == EXIT_USER_ERROR
    assert "other than --input-dir" in capsys.readouterr().err


def test_failed_write_leaves_no_partial_set(files, tmp_path, capsys, monkeypatch):
    def failing(path, rgb):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("s3pot.runtime.io.save_image", failing)
    out = tmp_path / "out"
    code = main(["segment", *_single(files), "--out", str(out), "--save-vis", *TINY])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and "No space left" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_directory_mode_goes_on_past_a_bad_sample(files, tmp_path, capsys):
    import shutil
    root = tmp_path / "data"
    root.mkdir()
    for suffix in (".jpg", "_ref.png", "_parsing_mask.npy"):
        shutil.copy(files / f"face{suffix}", root / f"good{suffix}")
        shutil.copy(files / f"face{suffix}", root / f"noface{suffix}")
    np.save(root / "noface_parsing_mask.npy", np.full((512, 512), 4, np.uint8))
    out = tmp_path / "out"
    assert main(["segment", "--input-dir", str(root), "--out", str(out), *TINY]) == 1
    captured = capsys.readouterr()
    assert "1 of 2 samples" in captured.out
    assert "s3pot: error: sample noface:" in captured.err
    assert (out / "good_occlusion.png").is_file() and not (out / "noface_occlusion.png").exists()


def test_an_image_of_another_frame_than_its_reference_is_refused(files, tmp_path, capsys):
    """A 1 x 1 image against a 512 x 512 reference ran and exited 0; now one line, exit 2."""
    tiny = tmp_path / "one_pixel.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    _user_error(_replace_input(files, 1, tiny), tmp_path, capsys, "expected at least 64 x 64 pixels")
