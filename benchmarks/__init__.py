"""Benchmarks of s3pot-rt; run each as ``python -m benchmarks.<name>`` from the repository root."""
