"""Finds and checks what the TensorRT backend runs: the engines ``s3pot build`` wrote into an
export folder, and the manifest that says what they compute.

A TensorRT plan runs only on the TensorRT version and the GPU it was built with, and TensorRT says
so only after deserialising it (``None``, the reason in its log). So every engine's sidecar
(:mod:`s3pot.core.sidecar`) is compared with this machine, the export's graph and the wanted
precision *before* any plan is handed to TensorRT; a mismatch is one :class:`ExportError` naming
the engine, both values and the ``s3pot build`` command that fixes it. Layout::

    DIR/manifest.json                          variant, normalisation, face set, graph hashes
    DIR/engines/PRECISION/STAGE.engine         one plan per stage (encoder, fe, sa, decoder)
    DIR/engines/PRECISION/STAGE.engine.json    its sidecar

Plain Python: importing this module needs neither TensorRT nor a GPU.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from s3pot.core.errors import ExportError
from s3pot.core.gpu import GpuInfo
from s3pot.core.manifest import MANIFEST_NAME, PRECISIONS, read_manifest
from s3pot.core.sidecar import Sidecar, check_engine, engine_dir, engine_paths, read_sidecar

from ..base import ModelContext, check_variant, export_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineFolder:
    """The engines of one export folder at one precision, found but not yet checked."""

    folder: Path  # the export folder (``s3pot export --out``)
    precision: str  # "fp32" or "fp16"
    manifest: dict
    engines: dict  # stage name -> Path of STAGE.engine, in pipeline order

    @property
    def variant(self) -> str:
        return self.manifest["variant"]

    @property
    def engine_dir(self) -> Path:
        return engine_dir(self.folder, self.precision)

    @property
    def build_command(self) -> str:
        return f"s3pot build --model {self.folder} --precision {self.precision}"

    def context(self) -> ModelContext:
        """What the graphs behind the engines were exported with; a pipeline runs them so."""
        return export_context(self.manifest, self.folder)


def find_engines(folder, *, precision: str = "fp32", variant: str | None = None) -> EngineFolder:
    """The four engines of export folder ``folder`` at ``precision``; the manifest is read (and
    ``variant``, when given, must be its), a missing engine names its file and the build command."""
    folder = Path(folder)
    if precision not in PRECISIONS:
        raise ExportError(f"tensorrt precision: expected one of {', '.join(PRECISIONS)} (the "
                          f"engines `s3pot build` makes), got {precision!r}")
    manifest = read_manifest(folder)
    check_variant(manifest, folder, variant)
    engines = engine_paths(folder, precision)
    missing = [path for path in engines.values() if not path.is_file()]
    if missing:
        raise ExportError(
            f"export folder '{folder}': expected the {precision} engine '{missing[0]}'"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f", got no such file: build the engines with `s3pot build --model {folder} "
            f"--precision {precision}` on this machine")
    return EngineFolder(folder=folder, precision=precision, manifest=manifest, engines=engines)


def graph_sha256(engines: EngineFolder, sidecar: Sidecar) -> str:
    """The manifest's sha256 of the graph ``sidecar`` says its engine was parsed from (TensorRT 10
    builds fp16 engines from the fp32 graph, TensorRT 11 from the fp16 one)."""
    for entry in engines.manifest["graphs"].get(sidecar.stage, {}).values():
        if entry["file"] == sidecar.onnx_file:
            return entry["sha256"]
    raise ExportError(f"engine '{sidecar.engine_label}' was built from ONNX graph "
                      f"'{sidecar.onnx_file}', which '{engines.folder / MANIFEST_NAME}' no longer "
                      f"lists (exported again?): rebuild it with `{engines.build_command}`")


def check_engines(engines: EngineFolder, *, tensorrt_version: str, gpu: GpuInfo) -> dict:
    """Every engine's sidecar against this machine (TensorRT version, GPU name and compute
    capability), the export's graphs, the precision and the IO table, and every plan's sha256,
    before anything is deserialised. Returns stage -> :class:`~s3pot.core.sidecar.Sidecar`."""
    sidecars = {}
    for stage, path in engines.engines.items():
        sidecar = read_sidecar(path)
        sidecars[stage] = check_engine(
            path, tensorrt_version=tensorrt_version, gpu_name=gpu.name,
            compute_capability=gpu.compute_capability, onnx_sha256=graph_sha256(engines, sidecar),
            precision=engines.precision, model_dir=engines.folder)
        if sidecars[stage].stage != stage:
            raise ExportError(f"engine '{path}': expected an engine of stage {stage!r}, got one "
                              f"of stage {sidecars[stage].stage!r} (its sidecar): rebuild it with "
                              f"`{engines.build_command}`")
    log.debug("engines in '%s' match TensorRT %s on %s", engines.engine_dir, tensorrt_version,
              gpu.name)
    return sidecars
