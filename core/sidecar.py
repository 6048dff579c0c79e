"""The engine sidecar: what a TensorRT engine was built from, by what and on what.

A TensorRT plan only runs on the TensorRT version and the GPU it was built with, and it cannot be
checked before deserialisation (which fails with the reason only in TensorRT's log). So
``s3pot build`` writes ``STAGE.engine.json`` beside each ``STAGE.engine`` and the runtime compares
it with the machine before reading the plan. Engines live in the export folder they were built
from, one folder per precision (:func:`engine_dir`, :func:`engine_path`)::

    DIR/engines/PRECISION/STAGE.engine         the plan
    DIR/engines/PRECISION/STAGE.engine.json    its sidecar

Sidecar schema (``format`` ``s3pot-engine``, ``version`` 1)::

    stage, precision                     which stage, "fp32" or "fp16"
    tensorrt_version                     full version string, e.g. "10.16.0.1"
    gpu_name, compute_capability         e.g. "NVIDIA H100 80GB HBM3", "9.0"
    profiles                             [{input: {min, opt, max}}], from the stage IO table
    onnx_file, onnx_sha256               the graph parsed (as recorded in the export manifest)
    plan_sha256                          of STAGE.engine
    builder                              {typing, flags, precision_constraints, tf32, fp32_layers,
                                          profiling_verbosity}
    build_seconds, created, s3pot_version

Plain Python (and the IO table) only: the runtime imports it on machines without TensorRT.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from .atomic import write_bytes_atomic
from .errors import ExportError
from .io_table import get_stage
from .manifest import PRECISIONS, read_document, sha256_file

SIDECAR_FORMAT = "s3pot-engine"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".json"  # encoder.engine -> encoder.engine.json
ENGINE_SUFFIX = ".engine"
#: The folder of an export that holds its engines, one subfolder per precision.
ENGINES_FOLDER = "engines"
#: Every refusal ends with ": rebuild it with `s3pot build ...`".
REBUILD = "rebuild it with"

#: input name -> {"min": shape, "opt": shape, "max": shape}
ProfileJson = dict[str, dict[str, list[int]]]


@dataclass(frozen=True)
class Sidecar:
    """The record of one engine. ``engine`` is where it was read from (not serialised)."""

    stage: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profiles: list[ProfileJson]
    onnx_file: str
    onnx_sha256: str
    plan_sha256: str
    builder: dict
    build_seconds: float
    created: str
    s3pot_version: str
    engine: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "engine"}
        return {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **data}

    @property
    def engine_label(self) -> str:
        return str(self.engine) if self.engine is not None else f"{self.stage}{ENGINE_SUFFIX}"


_FIELDS = [f.name for f in fields(Sidecar) if f.name != "engine"]


def engine_dir(model_dir, precision: str, out=None) -> Path:
    """``DIR/engines/PRECISION`` (or ``OUT/PRECISION``)."""
    root = Path(out) if out is not None else Path(model_dir) / ENGINES_FOLDER
    return root / precision


def engine_path(model_dir, stage: str, precision: str, out=None) -> Path:
    """``DIR/engines/PRECISION/STAGE.engine`` (or ``OUT/PRECISION/STAGE.engine``)."""
    return engine_dir(model_dir, precision, out) / f"{stage}{ENGINE_SUFFIX}"


def engine_paths(model_dir, precision: str) -> dict[str, Path]:
    """Stage name -> where its engine at ``precision`` is, for every stage, in pipeline order."""
    from .io_table import STAGES

    return {stage: engine_path(model_dir, stage, precision) for stage in STAGES}


def sidecar_path(engine) -> Path:
    """``x/encoder.engine`` -> ``x/encoder.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def engine_path_of(path) -> Path:
    """The engine a path names: the path itself, or the engine of a sidecar path."""
    path = Path(path)
    if path.name.endswith(ENGINE_SUFFIX + SIDECAR_SUFFIX):
        return path.with_name(path.name[: -len(SIDECAR_SUFFIX)])
    return path


def profile_json(stage: str) -> list[ProfileJson]:
    """The stage's one optimisation profile from the IO table, as sidecar JSON."""
    return [{name: {"min": list(lo), "opt": list(opt), "max": list(hi)}
             for name, (lo, opt, hi) in get_stage(stage).profile().items()}]


def s3pot_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3pot-rt")
    except PackageNotFoundError:
        return "unknown"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_sidecar(engine, sidecar: Sidecar) -> Path:
    """Write ``sidecar`` beside ``engine`` as ``ENGINE.json``, atomically; returns its path."""
    text = json.dumps(sidecar.to_json(), indent=1) + "\n"
    return write_bytes_atomic(sidecar_path(engine), text.encode())


def read_sidecar(path) -> Sidecar:
    """The sidecar of engine ``path`` (or the sidecar file itself), its format and fields checked.

    A missing or unreadable sidecar raises :class:`ExportError` naming the engine.
    """
    engine = engine_path_of(path)
    side = sidecar_path(engine)
    if not side.is_file():
        raise ExportError(f"engine '{engine}': expected its sidecar '{side}' (written by "
                          f"`s3pot build`), got no such file: {REBUILD} `s3pot build --model DIR`")
    data = read_document(side, "sidecar", SIDECAR_FORMAT, SIDECAR_VERSION, _FIELDS,
                         hint=f"{REBUILD} `s3pot build --model DIR`")
    return _from_json(data, side, engine)


def _from_json(data: dict, side: Path, engine: Path) -> Sidecar:
    if data["precision"] not in PRECISIONS:
        raise ExportError(f"sidecar '{side}': precision: expected one of {list(PRECISIONS)}, "
                          f"got {data['precision']!r}")
    get_stage(data["stage"])  # an unknown stage lists the valid ones
    return Sidecar(**{name: data[name] for name in _FIELDS}, engine=engine)


def _rebuild_hint(sidecar: Sidecar, model_dir) -> str:
    return (f"{REBUILD} `s3pot build --model {model_dir or 'DIR'} "
            f"--precision {sidecar.precision}`")


def check_sidecar(sidecar: Sidecar, *, tensorrt_version: str, gpu_name: str,
                  compute_capability: str, onnx_sha256: str | None, precision: str | None = None,
                  model_dir=None) -> None:
    """Refuse an engine made for another machine, graph or precision than this one.

    Compares the sidecar with this machine's TensorRT version, GPU name and compute capability,
    the export's ONNX sha256 (``None``: not compared), the wanted ``precision`` (``None``: any) and
    this s3pot's IO table profile. A mismatch raises :class:`ExportError` naming the engine and
    both values.
    """
    engine, hint = sidecar.engine_label, _rebuild_hint(sidecar, model_dir)
    if precision is not None and sidecar.precision != precision:
        raise ExportError(f"engine '{engine}' was built for {sidecar.precision}, expected "
                          f"{precision}: use the {precision} engine or {hint}")
    if sidecar.tensorrt_version != tensorrt_version:
        raise ExportError(f"engine '{engine}' was built by TensorRT {sidecar.tensorrt_version}, "
                          f"this machine has {tensorrt_version}: {hint}")
    if (sidecar.gpu_name, sidecar.compute_capability) != (gpu_name, compute_capability):
        raise ExportError(f"engine '{engine}' was built on GPU '{sidecar.gpu_name}' (compute "
                          f"capability {sidecar.compute_capability}), this machine has "
                          f"'{gpu_name}' (compute capability {compute_capability}): {hint}")
    if onnx_sha256 is not None and sidecar.onnx_sha256 != onnx_sha256:
        raise ExportError(f"engine '{engine}' was built from ONNX graph '{sidecar.onnx_file}' with "
                          f"sha256 {sidecar.onnx_sha256[:16]}..., the export now has "
                          f"{onnx_sha256[:16]}...: {hint}")
    expected = profile_json(sidecar.stage)
    if sidecar.profiles != expected:
        raise ExportError(f"engine '{engine}' was built for input shapes {sidecar.profiles}, this "
                          f"s3pot expects {expected}: {hint}")


def check_plan(sidecar: Sidecar, engine=None, *, model_dir=None) -> Path:
    """Refuse a plan file whose sha256 is not the one its sidecar records; returns its path."""
    engine = Path(engine) if engine is not None else sidecar.engine
    if engine is None or not engine.is_file():
        raise ExportError(f"engine '{engine or sidecar.engine_label}': expected the plan file its "
                          f"sidecar describes, got no such file: {_rebuild_hint(sidecar, model_dir)}")
    actual = sha256_file(engine)
    if actual != sidecar.plan_sha256:
        raise ExportError(f"engine '{engine}': expected sha256 {sidecar.plan_sha256[:16]}... (recorded "
                          f"in '{sidecar_path(engine)}'), got {actual[:16]}... (the plan was replaced "
                          f"or damaged): {_rebuild_hint(sidecar, model_dir)}")
    return engine


def check_engine(engine, *, tensorrt_version: str, gpu_name: str, compute_capability: str,
                 onnx_sha256: str | None, precision: str | None = None, model_dir=None) -> Sidecar:
    """Read the sidecar of ``engine`` and refuse any mismatch (machine, graph, plan); what the
    runtime calls before handing the plan to TensorRT."""
    sidecar = read_sidecar(engine)
    check_sidecar(sidecar, tensorrt_version=tensorrt_version, gpu_name=gpu_name,
                  compute_capability=compute_capability, onnx_sha256=onnx_sha256,
                  precision=precision, model_dir=model_dir)
    check_plan(sidecar, model_dir=model_dir)
    return sidecar
