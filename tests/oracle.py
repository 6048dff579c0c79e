"""The official ``segment-anything`` modeling code as a parity oracle: the loader the bench's
baseline uses (:mod:`s3pot.benchmarks.official_sam`), which imports ``segment_anything.modeling``
without the package's torchvision-bound ``__init__``."""
from __future__ import annotations

from s3pot.benchmarks.official_sam import build_sam, modeling

__all__ = ["build_sam", "modeling"]
