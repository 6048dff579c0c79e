"""OpenVINO backend: the same ONNX graphs of an export folder, compiled by OpenVINO for the CPU.

On CPUs with AVX512-BF16 or AMX, ``--precision bf16`` runs the matrix products in bfloat16 (FP32
graphs in, OpenVINO's inference-precision hint; inputs and outputs stay float32). It is a
reduced-precision path and is only taken when asked for; ``s3pot bench`` measures its error
against FP32.
"""
from __future__ import annotations

from s3pot.core.errors import S3potInputError

from ..export_folder import load_export
from .loader import PRECISION_HINTS, compile_stage, cpu_precisions
from .runner import OpenVinoRunner


def create_runner(spec) -> OpenVinoRunner:
    """A runner over the export folder ``spec.folder`` at ``spec.precision`` (``fp32`` or
    ``bf16``, both from the FP32 graphs) on the CPU."""
    if spec.folder is None:
        raise S3potInputError("backend openvino: expected an export folder (--model DIR, "
                              "written by `s3pot export`), got none")
    if spec.precision not in PRECISION_HINTS:
        raise S3potInputError(f"backend openvino: expected precision {' or '.join(PRECISION_HINTS)}, "
                              f"got {spec.precision!r}")
    if spec.device not in ("auto", "cpu"):
        raise S3potInputError(f"backend openvino: runs on the CPU; expected device auto or cpu, "
                              f"got {spec.device!r}")
    export = load_export(spec.folder, precision="fp32", variant=spec.variant)
    return OpenVinoRunner(export, precision=spec.precision, threads=spec.threads)


__all__ = ["OpenVinoRunner", "compile_stage", "cpu_precisions", "create_runner"]
