"""Finds and checks what the ONNX Runtime backend runs: an export folder's manifest and graphs
(:func:`..export_folder.load_export`, shared with OpenVINO), and the optimised-graph cache.

Graph optimisation (constant folding, fusions, the CPU's blocked layouts) takes seconds on a ViT
encoder, in every new process. The first session therefore saves its optimised graph, and later
processes load that file with optimisation off (ONNX Runtime's documented offline mode). The
optimised file depends on the graph, the ONNX Runtime version, the execution providers and the
CPU, so all four are in its name; it goes beside the graph (``DIR/.onnxruntime/``), or under
``$XDG_CACHE_HOME/s3pot/onnxruntime/`` when the export folder is read-only.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
from pathlib import Path

from ..export_folder import ExportFolder

log = logging.getLogger(__name__)

CACHE_FOLDER = ".onnxruntime"
OPTIMIZED_NAME = "model.onnx"


# -- the optimised-graph cache ------------------------------------------------------------------
def cpu_signature() -> str:
    """What makes an optimised CPU graph non-portable: the CPU model and its instruction sets."""
    text = platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return text + platform.processor()
    for key in ("model name", "flags"):
        line = next((l for l in info.splitlines() if l.startswith(key)), "")
        text += line
    return text


def cache_key(graph_sha256: str, ort_version: str, providers, level: str) -> str:
    parts = [graph_sha256, ort_version, ",".join(providers), level, cpu_signature()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def default_cache_root() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "s3pot" / "onnxruntime"


def optimized_dir(export: ExportFolder, stage: str, key: str, cache_dir=None) -> Path | None:
    """The folder holding stage's optimised graph (``model.onnx``, with ``model.onnx.data`` for a
    graph past 2 GB): the export's cache folder if writable, else the user cache; None when
    neither can be written."""
    name = f"{stage}.{export.precision}.{key}"
    roots = [Path(cache_dir)] if cache_dir is not None else [export.folder / CACHE_FOLDER,
                                                               default_cache_root()]
    for root in roots:
        if (root / name / OPTIMIZED_NAME).is_file():
            return root / name
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            return root / name
    log.info("no writable folder for optimised graphs (%s); optimising in every process",
             ", ".join(str(r) for r in roots))
    return None
