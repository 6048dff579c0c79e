"""Exporting S3POT's four stages (encoder, FE, SA, decoder) to ONNX and TensorRT engines.

The stage modules live in :mod:`s3pot.models.stages`; the exporters, the IO table and the engine
builder land here with the export milestone (see the README's roadmap).
"""
