"""Finds and checks what the ONNX Runtime backend runs: an export folder's manifest and graphs.

Every graph's sha256 is compared with the manifest before a session is made, so a missing or
altered file is refused with its name; the manifest, not the graphs, says which variant,
normalisation and face set the graphs were exported with.

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
from dataclasses import dataclass
from pathlib import Path

from s3pot.core.io_table import STAGES
from s3pot.core.manifest import graph_entry, read_manifest, verify_graph

from ..base import ModelContext, check_variant, export_context

log = logging.getLogger(__name__)

CACHE_FOLDER = ".onnxruntime"
OPTIMIZED_NAME = "model.onnx"


@dataclass(frozen=True)
class ExportFolder:
    """A checked export folder: the path and sha256 of each stage's graph, and the manifest."""

    folder: Path
    manifest: dict
    precision: str
    graphs: dict  # stage name -> Path
    digests: dict  # stage name -> sha256 of the graph file (from the verified manifest)

    @property
    def variant(self) -> str:
        return self.manifest["variant"]

    @property
    def context(self) -> ModelContext:
        """What the graphs were exported with; a pipeline runs them with exactly this."""
        return export_context(self.manifest, self.folder)

    def has_external_data(self, stage: str) -> bool:
        return bool(graph_entry(self.manifest, stage, self.precision).get("external_data"))


def load_export(folder, *, precision: str = "fp32", variant: str | None = None) -> ExportFolder:
    """Read and verify the export in ``folder``; ``variant``, when given, must be the manifest's."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    check_variant(manifest, folder, variant)
    graphs = {name: verify_graph(folder, manifest, name, precision) for name in STAGES}
    digests = {name: graph_entry(manifest, name, precision)["sha256"] for name in STAGES}
    return ExportFolder(folder=folder, manifest=manifest, precision=precision, graphs=graphs,
                        digests=digests)


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
