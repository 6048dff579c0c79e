"""ONNX Runtime backend: the four graphs of an export folder (``s3pot export``), no torch needed."""
from .loader import ExportFolder, load_export
from .runner import OnnxRuntimeBackend

__all__ = ["ExportFolder", "OnnxRuntimeBackend", "load_export"]
