"""The ``trtexec`` and ``polygraphy convert`` command lines equivalent to ``s3pot build``.

For building on a machine where s3pot is not installed, or checking what the builder does. Both
follow the same :mod:`.recipe` as the builder: shapes from the IO table, on TensorRT 10 ``--fp16``
with the FP32 layers named (the ONNX nodes of LayerNormalization, Softmax, Reduce*, Pow, Sqrt with
float outputs, read with the ``onnx`` package: the ONNX parser names each layer after its node),
on TensorRT 11 the mixed-precision fp16 graph, strongly typed, with no precision flag. Needs
neither TensorRT nor a GPU.

Differences that remain: Polygraphy has no per-layer output types (only ``--layer-precisions``)
and disables TF32 unless ``--tf32`` is given; trtexec enables TF32 unless ``--noTF32``.
"""
from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from s3pot.core.errors import ExportError
from s3pot.core.io_table import STAGES, get_stage
from s3pot.core.manifest import read_manifest
from s3pot.core.sidecar import engine_path

from .builder import graph_entry_for
from .recipe import Recipe, is_fp32_onnx_op, recipe_for
from .timing_cache import TIMING_CACHE_SUFFIX, default_cache_dir

log = logging.getLogger(__name__)

_ALWAYS_FLOAT_OPS = ("LayerNormalization", "Softmax")


@dataclass(frozen=True)
class StageCommands:
    """The two equivalent command lines (argument lists) for one engine."""

    stage: str
    recipe: Recipe
    trtexec: list[str]
    polygraphy: list[str]
    fp32_layers: tuple[str, ...] = ()

    def text(self) -> str:
        head = f"# {self.stage} {self.recipe.precision}: {self.recipe.describe()}"
        if self.recipe.pin_fp32:
            head += f" ({len(self.fp32_layers)} layers)"
        return "\n".join([head, shlex.join(self.trtexec), shlex.join(self.polygraphy)])


def fp32_node_names(onnx_path) -> list[str]:
    """Names of the ONNX nodes the FP16 recipe keeps in FP32 (:func:`.recipe.is_fp32_onnx_op`)
    whose outputs are float; nodes on integer (shape) tensors are left out, as the builder does.

    Reads the graph without its external weights; output types from ONNX shape inference.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # inference is only used to skip integer outputs
        log.warning("ONNX graph '%s': shape inference failed (%s); only %s nodes are pinned",
                    onnx_path, exc, "/".join(_ALWAYS_FLOAT_OPS))
    types = _elem_types(model.graph)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
              onnx.TensorProto.DOUBLE}
    names, unnamed = [], 0
    for node in model.graph.node:
        if not is_fp32_onnx_op(node.op_type):
            continue
        out = types.get(node.output[0]) if node.output else None
        if not (out in floats or (out is None and node.op_type in _ALWAYS_FLOAT_OPS)):
            continue
        if node.name:
            names.append(node.name)
        else:
            unnamed += 1
    if unnamed:
        log.warning("ONNX graph '%s': %d FP32 nodes have no name and cannot be pinned by name",
                    onnx_path, unnamed)
    return names


def _elem_types(graph) -> dict[str, int]:
    types = {t.name: t.data_type for t in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def _trtexec_shapes(shapes: dict, which: int) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, s[which]))}" for name, s in shapes.items())


def _polygraphy_shapes(shapes: dict, which: int) -> list[str]:
    return [f"{name}:[{','.join(map(str, s[which]))}]" for name, s in shapes.items()]


def trtexec_command(onnx_path, engine, stage: str, recipe: Recipe, timing_cache, fp32_layers) -> list[str]:
    shapes = get_stage(stage).profile()
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}",
           *(f"--{k}Shapes={_trtexec_shapes(shapes, i)}" for i, k in enumerate(("min", "opt", "max")))]
    if recipe.strongly_typed:
        cmd.append("--stronglyTyped")  # a no-op from trtexec 11 on, where every network is
    if recipe.fp16_flag:
        cmd.append("--fp16")
    if recipe.pin_fp32:
        cmd.append("--precisionConstraints=obey")
        if fp32_layers:
            cmd += ["--layerPrecisions=" + ",".join(f"{n}:fp32" for n in fp32_layers),
                    "--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in fp32_layers)]
    if not recipe.tf32:
        cmd.append("--noTF32")
    return cmd + [f"--timingCacheFile={timing_cache}", "--profilingVerbosity=detailed",
                  "--skipInference"]


def polygraphy_command(onnx_path, engine, stage: str, recipe: Recipe, timing_cache,
                       fp32_layers) -> list[str]:
    shapes = get_stage(stage).profile()
    cmd = ["polygraphy", "convert", str(onnx_path), "--convert-to", "trt", "-o", str(engine)]
    for i, key in enumerate(("min", "opt", "max")):
        cmd += [f"--trt-{key}-shapes", *_polygraphy_shapes(shapes, i)]
    if recipe.strongly_typed:
        cmd.append("--strongly-typed")
    if recipe.fp16_flag:
        cmd.append("--fp16")
    if recipe.pin_fp32:
        cmd += ["--precision-constraints", "obey"]
        if fp32_layers:
            cmd += ["--layer-precisions", *(f"{n}:float32" for n in fp32_layers)]
    if recipe.tf32:
        cmd.append("--tf32")  # Polygraphy's default is off; the builder leaves it on for fp16
    return cmd + ["--load-timing-cache", str(timing_cache), "--save-timing-cache",
                  str(timing_cache), "--profiling-verbosity", "detailed"]


def stage_commands(onnx_path, engine, stage: str, recipe: Recipe, timing_cache) -> StageCommands:
    layers = tuple(fp32_node_names(onnx_path)) if recipe.pin_fp32 else ()
    return StageCommands(stage, recipe,
                         trtexec_command(onnx_path, engine, stage, recipe, timing_cache, layers),
                         polygraphy_command(onnx_path, engine, stage, recipe, timing_cache, layers),
                         layers)


def default_timing_cache(trt_major: int) -> Path:
    """The cache file the printed commands use: one per TensorRT major version (the commands
    cannot know the GPU; pass a keyed file with ``--timing-cache``)."""
    return default_cache_dir() / f"commands-trt{trt_major}{TIMING_CACHE_SUFFIX}"


def commands_for(model_dir, *, trt_major: int, precisions=("fp16",), stages=None, out=None,
                 timing_cache_file=None) -> list[StageCommands]:
    """The commands for every stage x precision of export folder ``model_dir``."""
    manifest = read_manifest(model_dir)
    cache = Path(timing_cache_file) if timing_cache_file is not None else default_timing_cache(trt_major)
    result = []
    for precision in precisions:
        recipe = recipe_for(trt_major, precision)
        for stage in stages or STAGES:
            entry = graph_entry_for(model_dir, manifest, stage, recipe)
            onnx_path = Path(model_dir) / entry["file"]
            if not onnx_path.is_file():
                raise ExportError(f"export folder '{model_dir}': expected {entry['file']} (listed "
                                  "in manifest.json), got no such file")
            result.append(stage_commands(onnx_path, engine_path(model_dir, stage, precision, out),
                                         stage, recipe, cache))
    return result


def format_commands(commands: list[StageCommands]) -> str:
    return "\n\n".join(c.text() for c in commands)
