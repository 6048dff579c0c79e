"""Finds and checks what the ONNX Runtime backend runs: an export folder's manifest and graphs.

Every graph's sha256 is compared with the manifest before a session is made, so a missing or
altered file is refused with its name; the manifest, not the graphs, says which variant,
normalisation and face set the graphs were exported with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s3pot.core.errors import ExportError
from s3pot.core.io_table import STAGES
from s3pot.core.manifest import read_manifest, verify_graph


@dataclass(frozen=True)
class ExportFolder:
    """A checked export folder: the path of each stage's graph and the manifest."""

    folder: Path
    manifest: dict
    precision: str
    graphs: dict  # stage name -> Path

    @property
    def variant(self) -> str:
        return self.manifest["variant"]

    @property
    def trained_context(self) -> dict:
        """What the graphs were exported with; a pipeline runs them with exactly this."""
        return {"normalization": self.manifest["normalization"],
                "face_set": tuple(self.manifest["face_set"]),
                "source": f"export '{self.folder}' ({self.variant})"}


def load_export(folder, *, precision: str = "fp32", variant: str | None = None) -> ExportFolder:
    """Read and verify the export in ``folder``; ``variant``, when given, must be the manifest's."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if variant is not None and manifest["variant"] != variant:
        raise ExportError(f"export folder '{folder}': expected variant {variant!r}, got "
                          f"{manifest['variant']!r} (its manifest)")
    graphs = {name: verify_graph(folder, manifest, name, precision) for name in STAGES}
    return ExportFolder(folder=folder, manifest=manifest, precision=precision, graphs=graphs)
