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
import platform
from pathlib import Path

from s3pot.core.machine import cpuinfo, first_writable, user_cache_dir

from ..export_folder import ExportFolder

log = logging.getLogger(__name__)

CACHE_FOLDER = ".onnxruntime"
OPTIMIZED_NAME = "model.onnx"


# -- the optimised-graph cache ------------------------------------------------------------------
def cpu_signature() -> str:
    """What makes an optimised CPU graph non-portable: the CPU model and its instruction sets."""
    return "|".join([platform.machine(), cpuinfo("model name") or platform.processor(),
                     cpuinfo("flags") or ""])


def cache_key(graph_sha256: str, ort_version: str, providers, level: str) -> str:
    parts = [graph_sha256, ort_version, ",".join(providers), level, cpu_signature()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def optimized_dir(export: ExportFolder, stage: str, key: str, cache_dir=None) -> Path | None:
    """The folder holding stage's optimised graph (``model.onnx``, with ``model.onnx.data`` for a
    graph past 2 GB): the export's cache folder if writable, else the user cache; None when
    neither can be written."""
    name = f"{stage}.{export.precision}.{key}"
    roots = [Path(cache_dir)] if cache_dir is not None else [export.folder / CACHE_FOLDER,
                                                               user_cache_dir("onnxruntime")]
    for root in roots:
        if (root / name / OPTIMIZED_NAME).is_file():
            return root / name
    root = first_writable(roots)
    if root is not None:
        return root / name
    log.info("no writable folder for optimised graphs (%s); optimising in every process",
             ", ".join(str(r) for r in roots))
    return None
