"""ONNX Runtime backend: the four graphs of an export folder (``s3pot export``), no torch needed."""
from __future__ import annotations

from s3pot.core.errors import S3potInputError

from ..export_folder import ExportFolder, load_export
from .runner import OnnxRuntimeRunner, create_session, resolve_providers, session_options


def create_runner(spec) -> OnnxRuntimeRunner:
    """A runner over the export folder ``spec.folder`` at ``spec.precision`` on ``spec.device``."""
    if spec.folder is None:
        raise S3potInputError("backend onnxruntime: expected an export folder (--model DIR, "
                              "written by `s3pot export`), got none")
    if spec.precision not in ("fp32", "fp16"):
        raise S3potInputError(f"backend onnxruntime: expected precision fp32 or fp16 (the "
                              f"exported graphs), got {spec.precision!r}")
    export = load_export(spec.folder, precision=spec.precision, variant=spec.variant)
    return OnnxRuntimeRunner(export, device=spec.device, threads=spec.threads)


__all__ = ["ExportFolder", "OnnxRuntimeRunner", "create_runner", "create_session", "load_export",
           "resolve_providers", "session_options"]
