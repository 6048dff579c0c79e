"""Running S3POT: input/output, pre/post-processing, the pipeline, backends and the CLI.

Imports with NumPy and OpenCV alone; torch, ONNX Runtime and TensorRT are imported by the backends
that need them.
"""
