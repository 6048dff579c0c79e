"""``s3pot quantize``: an INT8 encoder for OpenVINO, by NNCF's post-training quantization.

The encoder is 94% of a sample on the CPU, and on CPUs with VNNI (AVX512-VNNI, AVX-VNNI, AMX)
OpenVINO runs INT8 matrix products at twice the rate of BF16. NNCF (OpenVINO's own compression
library) quantizes the export's FP32 encoder graph: per-channel symmetric INT8 weights, per-tensor
INT8 activations whose ranges it measures on a few calibration faces, with its transformer
settings (the fused attention, softmax, norms and GELU stay in floating point, which OpenVINO runs
in BF16 where the CPU has it). Two choices were measured on ViT-B (random weights, relative L2
against FP32 on the bench's face): SAM's neck, the last two convolutions, stays in floating point
(its error reaches the output unaveraged: 3.2% -> 2.7%); SmoothQuant is off by default (2.7% ->
2.2%, and quantizing takes 50 s instead of 85 s), because random weights have no activation
outliers for it to move; ``smooth_quant=ALPHA`` turns it on for a real checkpoint, where it may
pay (compare the record's ``check`` of both). Only the encoder is quantized: FE, SA and the
decoder are 6% of a sample and stay BF16 / FP32.

The result is OpenVINO IR beside the graphs (:mod:`s3pot.core.quantized`), with a record of what
it was made from and its error against the FP32 graph on one image (refused past
:data:`~s3pot.core.quantized.INT8_TOLERANCE`). Calibration faces: ``--calibration`` images, or the
three aligned public-domain faces shipped in ``s3pot/export/calibration/``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from s3pot.core.errors import ExportError, S3potInputError, require
from s3pot.core.machine import write_error
from s3pot.core.manifest import graph_entry, read_manifest, sha256_file, verify_graph
from s3pot.core.quantized import INT8_TOLERANCE, STAGE, int8_dir, int8_paths, write_record

log = logging.getLogger(__name__)

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: NNCF's settings, recorded as they are passed.
METHOD = {"tool": "nncf.quantize", "model_type": "transformer", "preset": "mixed",
          "weights": "int8 symmetric per channel", "activations": "int8 per tensor"}
#: Convolutions left in floating point, counted from the end: SAM's neck (1x1 and 3x3 to 256).
FLOAT_TAIL_CONVOLUTIONS = 2


def default_calibration() -> list[Path]:
    return sorted(p for p in CALIBRATION_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def calibration_pixels(paths, normalization: str) -> list[np.ndarray]:
    """Each image as the encoder sees it: resized to 1024 x 1024 and normalised, ``1 x 3 x 1024 x
    1024`` float32."""
    from s3pot.runtime.io import load_image
    from s3pot.runtime.preprocess import normalize, resize_image

    return [normalize(resize_image(load_image(path)), normalization)[None] for path in paths]


def float_layers(model) -> list[str]:
    """Names of the operations of OpenVINO ``model`` (the converted encoder) kept out of INT8."""
    convolutions = [op.get_friendly_name() for op in model.get_ordered_ops()
                    if op.get_type_name() == "Convolution"]
    return convolutions[-FLOAT_TAIL_CONVOLUTIONS:]


def quantize_encoder(folder, *, calibration=None, smooth_quant: float | None = None,
                     say=log.info) -> dict:
    """Quantize the FP32 encoder of export folder ``folder`` to INT8 into
    ``folder/openvino/int8/``; returns the record. ``calibration``: image paths (default: the
    shipped faces); ``smooth_quant``: SmoothQuant's alpha for the matrix products (default off).
    Nothing is left half-written: the files appear together, or not at all."""
    if smooth_quant is not None and not 0 < smooth_quant <= 1:
        raise S3potInputError(f"--smooth-quant: expected an alpha in (0, 1], got {smooth_quant}")
    ov = require("openvino", "openvino (or the openvino extra)")
    nncf = require("nncf", "nncf (or the quantize extra)")
    folder = Path(folder)
    manifest = read_manifest(folder)
    source = verify_graph(folder, manifest, STAGE, "fp32")
    _check_writable(folder)
    paths = [Path(p) for p in (calibration or default_calibration())]
    if not paths:
        raise S3potInputError("--calibration: expected at least one face image, got none")
    pixels = calibration_pixels(paths, manifest["normalization"])
    start = time.perf_counter()
    say(f"quantize: {source.name} to INT8 with NNCF {nncf.__version__}, calibrated on "
        f"{len(paths)} face{'s' if len(paths) > 1 else ''} ({', '.join(p.name for p in paths)})")
    logging.getLogger("nncf").setLevel(logging.WARNING)  # its INFO lines name ignored nodes
    model = ov.convert_model(str(source))
    floats = float_layers(model)
    alphas = nncf.AdvancedSmoothQuantParameters(matmul=-1 if smooth_quant is None else smooth_quant)
    quantized = nncf.quantize(model, nncf.Dataset(pixels), model_type=nncf.ModelType.TRANSFORMER,
                              preset=nncf.QuantizationPreset.MIXED, subset_size=len(pixels),
                              ignored_scope=nncf.IgnoredScope(names=floats),
                              advanced_parameters=nncf.AdvancedQuantizationParameters(
                                  smooth_quant_alphas=alphas))
    error = _check(ov, model, quantized, pixels[0])
    say(f"quantize: {time.perf_counter() - start:.0f} s; INT8 against FP32 on {paths[0].name}: "
        f"relative L2 {error:.2e} (tolerance {INT8_TOLERANCE:g})")
    if not error <= INT8_TOLERANCE:
        raise ExportError(f"INT8 encoder of '{folder}': expected relative L2 error <= "
                          f"{INT8_TOLERANCE:g} against the FP32 graph on {paths[0].name}, got "
                          f"{error:.3g}; nothing was written (try other --calibration faces)")
    return _write(ov, folder, quantized, {
        "stage": STAGE, "source_file": source.name, "source_sha256": graph_entry(manifest, STAGE, "fp32")["sha256"],  # verified above
        "openvino_version": ov.__version__.split("-")[0], "nncf_version": nncf.__version__,
        "method": {**METHOD, "subset_size": len(pixels), "float_layers": floats,
                   "smooth_quant": "off" if smooth_quant is None else smooth_quant},
        "calibration": [{"name": p.name, "sha256": sha256_file(p)} for p in paths],
        "check": {"image": paths[0].name, "rel_l2": error, "tolerance": INT8_TOLERANCE},
        "seconds": round(time.perf_counter() - start, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _check_writable(folder: Path) -> None:
    """Refuse, before any work, a folder where the INT8 encoder cannot be written."""
    target = int8_dir(folder)
    error = write_error(target)
    if error is not None:
        raise S3potInputError(f"--model '{folder}': expected a writable export folder for the INT8 "
                              f"encoder ({target}), got {error}")


def _check(ov, model, quantized, pixels: np.ndarray) -> float:
    """Relative L2 error of the quantized encoder against the FP32 one on ``pixels``, both in
    OpenVINO on the CPU (the quantized one as the runtime compiles it)."""
    from s3pot.runtime.backends.openvino.loader import cpu_precisions

    core = ov.Core()
    floats = "bf16" if "bf16" in cpu_precisions(core) else "f32"
    want = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(pixels)[0]
    got = core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": floats})(pixels)[0]
    want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def _write(ov, folder: Path, quantized, record: dict) -> dict:
    """Save the IR and its record: into a scratch folder first, then moved into place file by
    file, the record last (a folder without a record is not an INT8 encoder)."""
    import shutil
    import tempfile

    from s3pot.core.sidecar import s3pot_version

    target = int8_dir(folder)
    target.mkdir(parents=True, exist_ok=True)
    paths = int8_paths(folder)
    paths["record"].unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".quantize-") as scratch:
        xml = Path(scratch) / paths["xml"].name
        ov.save_model(quantized, str(xml), compress_to_fp16=False)
        files = {}
        for key in ("xml", "bin"):
            made = Path(scratch) / paths[key].name
            files[made.name] = sha256_file(made)
            shutil.move(str(made), str(paths[key]))
    record = {**record, "files": files, "s3pot_version": s3pot_version()}
    write_record(folder, record)
    return record
