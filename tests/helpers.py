"""Test helpers: sample inputs (real face photos with a synthetic parsing map) and the relative
L2 error every parity test states its tolerance in."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from s3pot.export.onnx_export import rel_l2  # noqa: F401  (re-exported for the parity tests)

#: Seed of the runtime tests' tiny export (tests/runtime/conftest.py) and of the torch model
#: compared with it.
TINY_EXPORT_SEED = 3


def ellipse_parsing(shape: tuple[int, int], centre: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    """A plausible parsing map: skin ellipse with eyes, nose and lips, hair above, background
    elsewhere. ``shape`` = (H, W); ``centre`` = (x, y); ``axes`` = (a_x, a_y) in pixels."""
    labels = np.zeros(shape, np.uint8)
    cx, cy = centre
    ax, ay = axes
    cv2.ellipse(labels, (cx, cy - ay // 3), (int(ax * 1.1), int(ay * 0.9)), 0, 180, 360, 4, -1)  # hair
    cv2.ellipse(labels, (cx, cy), (ax, ay), 0, 0, 360, 6, -1)  # skin
    for dx in (-ax // 2, ax // 2):
        cv2.ellipse(labels, (cx + dx, cy - ay // 4), (ax // 5, ay // 12), 0, 0, 360, 3, -1)  # eyes
        cv2.ellipse(labels, (cx + dx, cy - int(ay / 2.5)), (ax // 4, ay // 20 + 1), 0, 0, 360, 2, -1)  # brows
    cv2.ellipse(labels, (cx, cy + ay // 8), (ax // 8, ay // 5), 0, 0, 360, 5, -1)  # nose
    cv2.ellipse(labels, (cx, cy + ay // 2), (ax // 3, ay // 10), 0, 0, 360, 1, -1)  # lips
    return labels


def astronaut_sample():
    """``skimage.data.astronaut()`` (512 x 512) with an occluded copy and a parsing map of the
    clean reference: (image, reference, parsing)."""
    from skimage import data

    reference = data.astronaut()
    parsing = ellipse_parsing(reference.shape[:2], centre=(240, 170), axes=(75, 100))
    image = reference.copy()
    image[150:230, 200:300] = (30, 160, 40)  # a green "cup" over the lower face
    return image, reference, parsing


def run_both_backends(export_dir, torch_args: list[str], tmp_path, sample: str = "obama_face") -> dict:
    """`s3pot segment` on one test photo with `--backend onnxruntime --model export_dir` and with
    `--backend torch` plus ``torch_args``: whether the prompts agree, and the masks' IoU."""
    import json

    from s3pot.runtime.cli import main

    data = Path(__file__).resolve().parents[1] / "benchmarks" / "data"
    single = ["--image", str(data / f"{sample}.jpg"), "--reference", str(data / f"{sample}_ref.jpg"),
              "--parsing", str(data / f"{sample}_parsing_mask.npy"), "--device", "cpu"]
    found = {}
    for name, extra in (("onnxruntime", ["--model", str(export_dir)]), ("torch", torch_args)):
        out = tmp_path / name
        assert main(["segment", *single, "--backend", name, "--out", str(out), *extra]) == 0
        found[name] = (json.loads((out / f"{sample}_prompts.json").read_text()),
                       cv2.imread(str(out / f"{sample}_occlusion.png"), cv2.IMREAD_UNCHANGED) > 0)
    (ort_json, ort_mask), (torch_json, torch_mask) = found["onnxruntime"], found["torch"]
    same = all(ort_json[k] == torch_json[k] for k in ("initial_token", "occlusion_tokens", "face_tokens"))
    union = np.logical_or(ort_mask, torch_mask).sum()
    iou = 1.0 if union == 0 else float(np.logical_and(ort_mask, torch_mask).sum() / union)
    return {"same_prompts": same, "iou": iou}


def run_under_cuda_simulator(cases: Path) -> str:
    """Run the pytest file ``cases`` in a subprocess with Numba's CUDA simulator on (it must be
    set before Numba is imported); fails with its output unless every case passed. Returns the
    summary line."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "skipped" not in last, last
    return last


#: The five test photos (faces/SOURCE.md) and how many faces each shows.
FACE_PHOTOS = {"obama.jpg": 1, "biden.jpg": 1, "obama_small.jpg": 1, "two_people.jpg": 2, "32bit.png": 1}
FACES = Path(__file__).resolve().parent / "faces"

#: Face crops of the test photos (x0, y0, x1, y1), found by eye: square, the face in the middle.
FACE_CROPS = {"obama.jpg": (280, 40, 680, 440), "biden.jpg": (380, 100, 780, 500)}


def occluded_face_dataset(root: Path, *, ground_truth: bool = True) -> Path:
    """A small training set in the flat SPEC layout, built from real face photos: obama.jpg and
    biden.jpg cropped to the face, skimage's astronaut and the bench's sample face. Each has an
    occluder pasted over part of the face (a patch of another photo, or the astronaut's "cup"),
    the clean photo as its reference and a parsing map drawn with SPEC's labels; with
    ``ground_truth``, the occluder's box as NAME_gt.png (the sample face keeps its own)."""
    faces = Path(__file__).resolve().parent / "faces"
    data = Path(__file__).resolve().parents[1] / "benchmarks" / "data"
    root.mkdir(parents=True, exist_ok=True)
    patch_source = cv2.imread(str(faces / "two_people.jpg"))[..., ::-1]  # RGB
    samples = {}
    for index, (name, (x0, y0, x1, y1)) in enumerate(FACE_CROPS.items()):
        reference = np.ascontiguousarray(cv2.imread(str(faces / name))[y0:y1, x0:x1, ::-1])
        image, box = reference.copy(), (150 + 40 * index, 230, 110 + 20 * index, 300)  # y0, y1, x0, x1
        patch = patch_source[200:200 + box[1] - box[0], 300:300 + box[3] - box[2]]
        image[box[0]:box[1], box[2]:box[3]] = patch
        parsing = ellipse_parsing(reference.shape[:2], centre=(200, 200), axes=(125, 160))
        samples[Path(name).stem] = (image, reference, parsing, box)
    image, reference, parsing = astronaut_sample()
    samples["astronaut"] = (image, reference, parsing, (150, 230, 200, 300))
    for name, (image, reference, parsing, box) in samples.items():
        cv2.imwrite(str(root / f"{name}.png"), image[..., ::-1])
        cv2.imwrite(str(root / f"{name}_ref.png"), reference[..., ::-1])
        np.save(root / f"{name}_parsing_mask.npy", parsing)
        if ground_truth:
            truth = np.zeros(image.shape[:2], np.uint8)
            truth[box[0]:box[1], box[2]:box[3]] = 255
            cv2.imwrite(str(root / f"{name}_gt.png"), truth)
    import shutil
    for suffix in (".jpg", "_ref.jpg", "_parsing_mask.npy") + (("_gt.png",) if ground_truth else ()):
        shutil.copy(data / f"obama_face{suffix}", root / f"obama_face{suffix}")
    return root
