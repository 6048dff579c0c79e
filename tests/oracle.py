"""Load the official ``segment-anything`` modeling code as a parity oracle.

The package's ``__init__`` imports its predictor, which imports torchvision (not installable beside
the CPU torch used here). Only ``segment_anything.modeling`` and ``build_sam`` are needed, so the
package is registered as an empty module that points at the installed folder and the two are
imported through it, without running the real ``__init__``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def _package():
    name = "segment_anything"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("segment-anything is not installed: pip install -e '.[test]'")
    pkg = types.ModuleType(name)
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = pkg
    return pkg


def modeling():
    """``segment_anything.modeling`` (ImageEncoderViT, PromptEncoder, MaskDecoder, ...)."""
    _package()
    return importlib.import_module("segment_anything.modeling")


def build_sam():
    """``segment_anything.build_sam`` (sam_model_registry, build_sam_vit_b, ...)."""
    _package()
    return importlib.import_module("segment_anything.build_sam")
