"""A whole model to an export folder: four ONNX graphs (FP32, optionally FP16) and ``manifest.json``.

The folder is filled under a temporary name and renamed into place only when every graph has been
exported and checked, so a failed or interrupted export leaves nothing half-filled. The manifest
(schema in :mod:`s3pot.core.manifest`) records what the graphs compute, how they were made and
every file's sha256; ``s3pot build`` and the runtime read it.
"""
from __future__ import annotations

import importlib.metadata
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from s3pot.core.atomic import atomic_directory, check_output_folder
from s3pot.core.errors import ExportError, S3potInputError
from s3pot.core.io_table import STAGES, table_json
from s3pot.core.manifest import PRECISIONS, sha256_file, write_manifest
from s3pot.core.spec import resolve_context
# How the ViT encoder adds its relative-position bias in exported graphs (see
# ``ImageEncoderViT.set_attention`` and the README's export section for the measurements).
from s3pot.models.image_encoder import DEFAULT_ATTENTION

from .fp16 import count_fp16_nodes, fp16_path, to_fp16
from .onnx_export import (CHECK_SIZES, DEFAULT_SIMPLIFIER, FP32_TOLERANCE, IR_VERSION, OPSET,
                          check_model, compare, dynamic_sizes, export_stage, ort_session,
                          sample_feeds, save_model)

log = logging.getLogger(__name__)

#: Largest relative L2 error of an FP16 graph (ONNX Runtime) against the FP32 PyTorch stage.
FP16_TOLERANCE = 5e-2


@dataclass
class ExportRequest:
    """What to export: the model options of ``s3pot segment`` plus the export's own."""

    variant: str
    checkpoint: Path | None = None
    adapter: Path | None = None
    random_weights: bool = False
    seed: int = 0
    normalization: str | None = None
    face_set: object = None
    precisions: tuple[str, ...] = ("fp32",)
    attention: str = DEFAULT_ATTENTION
    simplifier: str = DEFAULT_SIMPLIFIER
    verify: bool = True
    overwrite: bool = False
    stages: tuple[str, ...] = field(default_factory=lambda: tuple(STAGES))


def check_request(request: ExportRequest, out: Path) -> None:
    """Everything a typo can break, before a model is built."""
    bad = [p for p in request.precisions if p not in PRECISIONS]
    if bad or "fp32" not in request.precisions:
        raise S3potInputError(f"--precision: expected fp32 and optionally fp16, got "
                              f"{list(request.precisions)}")
    unknown = [s for s in request.stages if s not in STAGES]
    if unknown:
        raise S3potInputError(f"stages {unknown}: expected some of {', '.join(STAGES)}")
    check_output_folder(out, overwrite=request.overwrite, what="--out")


def _versions(simplifier: str) -> dict:
    versions = {}
    for package in ("s3pot-rt", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", simplifier, "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _file_record(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _weights_record(request: ExportRequest) -> dict:
    if request.random_weights:
        return {"kind": "random", "seed": request.seed, "adapter": None}
    record = {"kind": "checkpoint", "checkpoint": {"name": Path(request.checkpoint).name,
                                                   "sha256": sha256_file(request.checkpoint)}}
    record["adapter"] = None if request.adapter is None else {
        "name": Path(request.adapter).name, "sha256": sha256_file(request.adapter)}
    return record


def _graph_record(path: Path, external: list[Path], nodes: int) -> dict:
    return {**_file_record(path), "nodes": nodes,
            "external_data": [_file_record(p) for p in external]}


def export_fp16(module, stage, fp32_path: Path, *, verify: bool) -> tuple[dict, dict]:
    """The FP16 graph beside ``fp32_path``; its record and its check against PyTorch FP32."""
    import onnx

    start = time.perf_counter()
    model = to_fp16(onnx.load(str(fp32_path)))
    model.ir_version = IR_VERSION
    path = fp16_path(fp32_path)
    external = save_model(model, path)
    check_model(path)
    half, total = count_fp16_nodes(model)
    record = _graph_record(path, external, len(model.graph.node))
    record["fp16_nodes"] = half
    del model
    check = {"seconds": time.perf_counter() - start, "fp16_nodes": f"{half} of {total}"}
    if verify:
        feeds = sample_feeds(stage, "opt", sizes=CHECK_SIZES, seed=1)
        error = compare(ort_session(path), module, stage, feeds)
        check.update(rel_l2=error, tolerance=FP16_TOLERANCE, sizes=dynamic_sizes(stage, feeds))
        if not error <= FP16_TOLERANCE:
            raise ExportError(f"stage {stage.name!r} in FP16: relative L2 {error:.2e} against "
                              f"FP32 PyTorch, expected at most {FP16_TOLERANCE:.0e}")
    return record, check


def export_folder(request: ExportRequest, out, *,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Export ``request``'s model into the folder ``out``; returns the manifest written there."""
    from s3pot.models import STAGE_MODULES, build_s3pot, get_variant

    out = Path(out)
    say = progress or log.info
    check_request(request, out)
    variant = get_variant(request.variant)
    started = time.perf_counter()
    model = build_s3pot(request.variant, checkpoint=request.checkpoint, adapter=request.adapter,
                        random_weights=request.random_weights, seed=request.seed)
    attention = request.attention if hasattr(model.image_encoder, "set_attention") else None
    if attention is not None:  # TinyViT has windowed attention with a small bias table only
        model.image_encoder.set_attention(attention)
    normalization, face_set = resolve_context(request.normalization, request.face_set,
                                              model.trained_context, variant.normalization)
    say(f"built {request.variant} ({'random weights' if request.random_weights else request.checkpoint}) "
        f"in {time.perf_counter() - started:.1f}s")
    graphs, checks, seconds = {}, {}, {}
    with atomic_directory(out, overwrite=request.overwrite) as tmp:
        for name in request.stages:
            stage_start = time.perf_counter()
            module = STAGE_MODULES[name](model)
            result = export_stage(module, name, tmp / f"{name}.onnx", simplifier=request.simplifier,
                                  verify=request.verify)
            graphs[name] = {"fp32": _graph_record(result.path, result.external_data, result.nodes)}
            checks[name] = {"fp32": {"rel_l2": result.rel_l2, "tolerance": FP32_TOLERANCE,
                                     "sizes": result.checked_at, "seconds": result.seconds}}
            message = (f"{name}: {result.nodes} nodes, {result.bytes / 1e6:.1f} MB"
                       + (f", rel. L2 {result.rel_l2:.1e} vs PyTorch" if request.verify else ""))
            if "fp16" in request.precisions:
                graphs[name]["fp16"], checks[name]["fp16"] = export_fp16(
                    module, STAGES[name], result.path, verify=request.verify)
                if request.verify:
                    message += f"; fp16 rel. L2 {checks[name]['fp16']['rel_l2']:.1e}"
            seconds[name] = time.perf_counter() - stage_start
            say(f"{message} ({seconds[name]:.1f}s)")
        manifest = {
            "variant": request.variant, "normalization": normalization, "face_set": list(face_set),
            "weights": _weights_record(request), "opset": OPSET, "ir_version": IR_VERSION,
            "attention": attention,
            "simplifier": request.simplifier, "precisions": list(request.precisions),
            "io": table_json(), "graphs": graphs, "checks": checks, "tools": _versions(request.simplifier),
            "export_seconds": seconds,
        }
        write_manifest(tmp, manifest)
    say(f"wrote {out} in {time.perf_counter() - started:.1f}s")
    return manifest
