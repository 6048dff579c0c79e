"""An export folder (``s3pot export``) as the graph backends read it (ONNX Runtime, OpenVINO).

Every graph's sha256 is compared with the manifest before a session is made, so a missing or
altered file is refused with its name; the manifest, not the graphs, says which variant,
normalisation and face set the graphs were exported with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s3pot.core.io_table import STAGES
from s3pot.core.manifest import graph_entry, read_manifest, verify_graph

from .base import ModelContext, check_variant, export_context


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
