"""Build one TensorRT engine per stage and precision from an export folder.

Thin over NVIDIA's Python API (``tensorrt`` imported inside the functions that need it):
parse the stage's ONNX graph, apply the :mod:`.recipe` of the installed major version, add the
stage's one optimisation profile from :mod:`s3pot.core.io_table`, build with a persistent timing
cache, and write ``STAGE.engine`` with its sidecar ``STAGE.engine.json`` (:mod:`s3pot.core.sidecar`),
both atomically. An engine whose sidecar still matches this machine and graph is kept.

Never set here, on purpose: ``BuilderFlag.VERSION_COMPATIBLE``, a hardware compatibility level,
``Runtime.engine_host_code_allowed``; an engine runs only on the TensorRT and GPU it was built
with, and the sidecar says which.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from s3pot.core.atomic import write_bytes_atomic
from s3pot.core.errors import ExportError
from s3pot.core.io_table import STAGES, get_stage
from s3pot.core.manifest import read_manifest, verify_graph
from s3pot.core.sidecar import (REBUILD, Sidecar, check_plan, check_sidecar, engine_path, now_iso,
                                profile_json, read_sidecar, s3pot_version, sidecar_path,
                                write_sidecar)

from s3pot.core import gpu as device
from . import timing_cache
from s3pot.core.gpu import GpuInfo
from s3pot.core.tensorrt import import_tensorrt, tensorrt_major
from .recipe import FP32_ELEMENTWISE_OPS, FP32_LAYER_TYPES, FP32_UNARY_OPS, Recipe, recipe_for

log = logging.getLogger(__name__)

_FLOAT_TYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Job:
    """One engine to build: the stage, its recipe, the verified ONNX graph and the engine path."""

    stage: str
    recipe: Recipe
    onnx_path: Path
    onnx_sha256: str
    engine: Path

    @property
    def precision(self) -> str:
        return self.recipe.precision


@dataclass(frozen=True)
class StageResult:
    """What happened to one engine: ``status`` "built" or "up to date"; ``reason`` why built."""

    stage: str
    precision: str
    engine: Path
    status: str
    seconds: float
    reason: str = ""
    fp32_layers: int = 0

    def describe(self) -> str:
        if self.status != "built":
            return f"{self.stage:8s} {self.precision}  up to date       {self.engine}"
        return (f"{self.stage:8s} {self.precision}  built in {self.seconds:7.1f} s  {self.engine}"
                + (f"  ({self.reason})" if self.reason else ""))


def graph_entry_for(model_dir, manifest: dict, stage: str, recipe: Recipe) -> dict:
    """The manifest entry of the ONNX graph ``recipe`` parses for ``stage``; a clear error
    (what to export) when the folder lacks it."""
    graphs = manifest["graphs"].get(stage, {})
    if recipe.onnx_precision not in graphs:
        why = ("TensorRT 11 builds FP16 engines from the mixed-precision fp16 graph (it has no "
               "per-layer precision API)" if recipe.onnx_precision == "fp16" else
               f"TensorRT {recipe.tensorrt_major} builds {recipe.precision} engines from the fp32 graph")
        raise ExportError(f"export folder '{model_dir}': expected the {recipe.onnx_precision} graph "
                          f"of stage {stage!r}, got only {sorted(graphs) or 'none'}; {why}: export "
                          f"with `s3pot export ... --precision fp32 fp16`")
    return graphs[recipe.onnx_precision]


def graph_for(model_dir, manifest: dict, stage: str, recipe: Recipe) -> tuple[Path, str]:
    """Path (existence and sha256 verified) and sha256 of the graph ``recipe`` parses."""
    entry = graph_entry_for(model_dir, manifest, stage, recipe)
    return verify_graph(model_dir, manifest, stage, recipe.onnx_precision), entry["sha256"]


def plan_jobs(model_dir, manifest: dict, *, stages, precisions, major: int, out=None) -> list[Job]:
    """Every engine asked for, each graph checked before anything is built."""
    jobs = []
    for precision in precisions:
        recipe = recipe_for(major, precision)
        for stage in stages:
            get_stage(stage)
            path, digest = graph_for(model_dir, manifest, stage, recipe)
            jobs.append(Job(stage, recipe, path, digest, engine_path(model_dir, stage, precision, out)))
    return jobs


# -- TensorRT calls ------------------------------------------------------------------------------
def make_logger(trt):
    """A ``trt.ILogger`` that keeps every message of severity INFO or worse (``.messages``)
    and passes warnings on to :mod:`logging`."""
    severity = trt.ILogger.Severity

    class CapturingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[tuple[object, str]] = []

        def log(self, level, msg):
            if int(level) <= int(severity.INFO):
                self.messages.append((level, str(msg)))
            if int(level) == int(severity.WARNING):
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

        def errors(self) -> list[str]:
            return [m for lvl, m in self.messages if int(lvl) <= int(severity.ERROR)]

    return CapturingLogger()


def create_network(trt, builder, recipe: Recipe):
    """An empty network: default flags on 10.x (explicit batch is implicit), STRONGLY_TYPED on
    11.x where the enum still has it (11.x ignores it: every network is strongly typed)."""
    flags = 0
    if recipe.strongly_typed:
        strong = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if strong is not None:
            flags |= 1 << int(strong)
    return builder.create_network(flags)


def parse_onnx(trt, network, logger, onnx_path: Path):
    """Parse ``onnx_path`` into ``network`` (from the file, so external weights are found).

    Returns the parser, which owns the weights and must outlive the build.
    """
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors()
        raise ExportError(f"ONNX graph '{onnx_path}': TensorRT's parser failed: "
                          + _one_line(errors or ["no error reported"]))
    return parser


def _one_line(lines) -> str:
    return " | ".join(" ".join(str(line).split()) for line in lines)


def _downcast(trt, layer, class_name: str):
    """The layer as its subclass (``get_layer`` returns the base ``ILayer``), as Polygraphy does."""
    cls = getattr(trt, class_name, None)
    if cls is not None and not isinstance(layer, cls):
        layer.__class__ = cls
    return layer


def keeps_fp32(trt, layer) -> bool:
    """Whether ``layer`` is one the FP16 recipe computes in FP32: normalisation, softmax,
    reduction, and the POW / SQRT of a LayerNorm written out by hand."""
    kind = layer.type
    if any(kind == getattr(trt.LayerType, name) for name in FP32_LAYER_TYPES):
        return True
    if kind == trt.LayerType.ELEMENTWISE:
        op = _downcast(trt, layer, "IElementWiseLayer").op
        return any(op == getattr(trt.ElementWiseOperation, name) for name in FP32_ELEMENTWISE_OPS)
    if kind == trt.LayerType.UNARY:
        op = _downcast(trt, layer, "IUnaryLayer").op
        return any(op == getattr(trt.UnaryOperation, name) for name in FP32_UNARY_OPS)
    return False


def pin_fp32_layers(trt, network) -> list[str]:
    """TensorRT 10 (weak typing): pin every :func:`keeps_fp32` layer to FP32, precision and
    output types, on its float outputs only (pinning an INT32 / shape output fails the build,
    NVIDIA/TensorRT#3177). Returns the names of the pinned layers."""
    floats = [getattr(trt, name) for name in _FLOAT_TYPES if hasattr(trt, name)]
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not keeps_fp32(trt, layer):
            continue
        outputs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
        if not outputs:
            continue
        layer.precision = trt.float32
        for j in outputs:
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def configure(trt, config, network, recipe: Recipe) -> dict:
    """Apply ``recipe`` to the builder config; returns the settings for the sidecar."""
    flags = []
    pinned: list[str] = []
    if recipe.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
        flags.append("FP16")
    if recipe.pin_fp32:
        pinned = pin_fp32_layers(trt, network)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        flags.append("OBEY_PRECISION_CONSTRAINTS")
    if not recipe.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default: FP32 means FP32
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions inspectable
    return {"typing": recipe.typing, "onnx_precision": recipe.onnx_precision, "flags": flags,
            "precision_constraints": "obey" if recipe.pin_fp32 else "none",
            "tf32": bool(config.get_flag(trt.BuilderFlag.TF32)), "fp32_layers": pinned,
            "profiling_verbosity": "DETAILED"}


def add_profile(builder, config, network, stage: str, onnx_path: Path) -> None:
    """The stage's one optimisation profile (min / opt / max per input) from the IO table."""
    shapes = get_stage(stage).profile()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(names) != sorted(shapes):
        raise ExportError(f"ONNX graph '{onnx_path}': expected the inputs of stage {stage!r} "
                          f"{sorted(shapes)} (IO table), got {sorted(names)}")
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, min=lo, opt=opt, max=hi)
    if config.add_optimization_profile(profile) < 0:
        raise ExportError(f"stage {stage!r}: TensorRT refused the optimisation profile {shapes}")


def build_plan(trt, job: Job, *, cache_path: Path | None) -> tuple[bytes, dict]:
    """The serialised engine of ``job`` and the builder settings used."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, job.recipe)
    parser = parse_onnx(trt, network, logger, job.onnx_path)
    config = builder.create_builder_config()
    settings = configure(trt, config, network, job.recipe)
    add_profile(builder, config, network, job.stage, job.onnx_path)
    if cache_path is not None:
        settings["timing_cache_loaded"] = timing_cache.attach(config, cache_path)
    plan = builder.build_serialized_network(network, config)
    del parser  # kept alive until here: it owns the weights the network points to
    if plan is None:
        raise ExportError(f"stage {job.stage!r} ({job.precision}): TensorRT could not build an "
                          f"engine from '{job.onnx_path}': "
                          + _one_line(logger.errors() or ["no error logged"]))
    if cache_path is not None:
        timing_cache.save(config, cache_path)
    return bytes(plan), settings


# -- one stage, all stages -------------------------------------------------------------------------
def stale_reason(job: Job, *, tensorrt_version: str, gpu: GpuInfo, model_dir) -> str | None:
    """Why ``job``'s engine must be (re)built, or None when its engine and sidecar still match."""
    if not job.engine.is_file() and not sidecar_path(job.engine).is_file():
        return "new"
    try:
        sidecar = read_sidecar(job.engine)
        check_sidecar(sidecar, tensorrt_version=tensorrt_version, gpu_name=gpu.name,
                      compute_capability=gpu.compute_capability, onnx_sha256=job.onnx_sha256,
                      precision=job.precision, model_dir=model_dir)
        check_plan(sidecar, job.engine, model_dir=model_dir)
    except ExportError as exc:
        return str(exc).split(f": {REBUILD}")[0]
    return None


def _remove(engine: Path) -> None:
    sidecar_path(engine).unlink(missing_ok=True)  # the sidecar first: never one without its plan
    engine.unlink(missing_ok=True)


def build_stage(trt, job: Job, *, gpu: GpuInfo, cache_path: Path | None, force: bool,
                model_dir) -> StageResult:
    """Build ``job``'s engine unless an up-to-date one exists; a failure leaves neither the
    engine nor a sidecar of this stage behind."""
    version = trt.__version__
    reason = "--force" if force else stale_reason(job, tensorrt_version=version, gpu=gpu,
                                                  model_dir=model_dir)
    if reason is None:
        log.info("%s %s: up to date (%s)", job.stage, job.precision, job.engine)
        return StageResult(job.stage, job.precision, job.engine, "up to date", 0.0)
    if reason != "new":
        log.info("%s %s: rebuilding: %s", job.stage, job.precision, reason)
    log.info("%s %s: building from '%s' (%s)", job.stage, job.precision, job.onnx_path,
             job.recipe.describe())
    _remove(job.engine)
    start = time.perf_counter()
    plan, settings = build_plan(trt, job, cache_path=cache_path)
    seconds = time.perf_counter() - start
    sidecar = Sidecar(
        stage=job.stage, precision=job.precision, tensorrt_version=version, gpu_name=gpu.name,
        compute_capability=gpu.compute_capability, profiles=profile_json(job.stage),
        onnx_file=job.onnx_path.name, onnx_sha256=job.onnx_sha256,
        plan_sha256=hashlib.sha256(plan).hexdigest(), builder=settings,
        build_seconds=round(seconds, 3), created=now_iso(), s3pot_version=s3pot_version())
    try:
        write_bytes_atomic(job.engine, plan)
        write_sidecar(job.engine, sidecar)
    except BaseException:
        _remove(job.engine)
        raise
    log.info("%s %s: built in %.1f s, %d layers pinned to FP32, TF32 %s -> %s", job.stage,
             job.precision, seconds, len(settings["fp32_layers"]),
             "on" if settings["tf32"] else "off", job.engine)
    return StageResult(job.stage, job.precision, job.engine, "built", seconds,
                       "" if reason == "new" else reason, len(settings["fp32_layers"]))


def build_engines(model_dir, *, precisions=("fp16",), stages=None, out=None, timing_cache_file=None,
                  force: bool = False, gpu: GpuInfo | None = None,
                  progress: Callable[[StageResult], None] | None = None) -> list[StageResult]:
    """Build (or keep) the engines of ``stages`` x ``precisions`` of export folder ``model_dir``.

    Engines go to ``DIR/engines/PRECISION/STAGE.engine`` (``out`` replaces ``DIR/engines``);
    ``timing_cache_file`` replaces the cache keyed by GPU and TensorRT version; ``gpu`` the
    queried GPU; ``progress`` is called after each stage. Raises
    :class:`~s3pot.core.errors.MissingDependencyError` without TensorRT and
    :class:`~s3pot.core.errors.ExportError` without a GPU, for a bad export folder or a failed build.
    """
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    gpu = gpu or device.query_gpu()
    manifest = read_manifest(model_dir)
    jobs = plan_jobs(model_dir, manifest, stages=list(stages or STAGES), precisions=precisions,
                     major=major, out=out)
    cache_path = (Path(timing_cache_file) if timing_cache_file is not None
                  else timing_cache.timing_cache_path(gpu, trt.__version__))
    log.info("TensorRT %s on %s (compute capability %s); timing cache '%s'", trt.__version__,
             gpu.name, gpu.compute_capability, cache_path)
    results = []
    for job in jobs:
        result = build_stage(trt, job, gpu=gpu, cache_path=cache_path, force=force,
                             model_dir=model_dir)
        results.append(result)
        if progress is not None:
            progress(result)
    return results
