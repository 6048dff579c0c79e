"""OpenVINO backend: the same ONNX graphs of an export folder, compiled by OpenVINO for the CPU.

On CPUs with AVX512-BF16 or AMX, ``--precision bf16`` runs the matrix products in bfloat16 (FP32
graphs in, OpenVINO's inference-precision hint; inputs and outputs stay float32). On CPUs with
VNNI or AMX, ``--precision int8`` runs the INT8 encoder of ``s3pot quantize`` (checked against the
folder's manifest first) and the other stages as ``bf16`` does (FP32 without BF16). Both are
reduced-precision paths, only taken when asked for; ``s3pot bench`` measures their error against
FP32.
"""
from __future__ import annotations

from s3pot.core.errors import S3potInputError

from ..export_folder import load_export
from .loader import PRECISION_HINTS, compile_stage, cpu_precisions
from .runner import OpenVinoRunner


def create_runner(spec) -> OpenVinoRunner:
    """A runner over the export folder ``spec.folder`` at ``spec.precision`` (``fp32`` or
    ``bf16`` from the FP32 graphs, ``int8`` with the quantized encoder) on the CPU."""
    if spec.folder is None:
        raise S3potInputError("backend openvino: expected an export folder (--model DIR, "
                              "written by `s3pot export`), got none")
    if spec.precision not in PRECISION_HINTS:
        raise S3potInputError(f"backend openvino: expected precision {', '.join(PRECISION_HINTS)}, "
                              f"got {spec.precision!r}")
    if spec.device not in ("auto", "cpu"):
        raise S3potInputError(f"backend openvino: runs on the CPU; expected device auto or cpu, "
                              f"got {spec.device!r}")
    export = load_export(spec.folder, precision="fp32", variant=spec.variant)
    encoder = None
    if spec.precision == "int8":
        from s3pot.core.quantized import check_int8, int8_paths

        check_int8(export.folder, export.manifest)
        encoder = int8_paths(export.folder)["xml"]
    return OpenVinoRunner(export, precision=spec.precision, threads=spec.threads,
                          int8_encoder=encoder)


__all__ = ["OpenVinoRunner", "compile_stage", "cpu_precisions", "create_runner"]
