"""S3POT's four stages to ONNX, driven by the stage IO table.

One function, :func:`export_stage`, turns one stage module into one graph: trace (TorchScript
exporter, opset 17), simplify (onnxsim: constant folding, shape simplification and dead-code
removal; measured against onnxslim, see the README), pin the IR version to one the pinned ONNX
Runtime and TensorRT's parser load, check (full ``onnx.checker``), save (external data past
protobuf's 2 GB), run once in ONNX Runtime and compare with PyTorch. A graph that fails any step
is never written where a user would find it. :func:`s3pot.export.folder.export_folder` drives it
for a whole model.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s3pot.core.atomic import honour_umask
from s3pot.core.errors import ExportError, require
from s3pot.core.io_table import INITIAL_POINT, POINT_COORDS, POINT_LABELS, Dim, StageIO, get_stage
from s3pot.core.spec import LABEL_NEGATIVE, LABEL_POSITIVE, TOKEN_CENTERS

log = logging.getLogger(__name__)

#: ONNX opset of every graph: LayerNormalization is one node from 17 on (TensorRT computes it in
#: FP32), and TensorRT 10's parser and ONNX Runtime 1.18+ both take it.
OPSET = 17
#: IR version written into every graph. onnx 1.23 writes IR 14, which ONNX Runtime 1.31 refuses
#: (it loads up to 13); IR 10 (onnx 1.16) is what TensorRT 10's parser and ONNX Runtime >= 1.17 read.
IR_VERSION = 10
#: Past this many bytes of weights a graph is saved with its weights in ``STAGE.onnx.data``.
EXTERNAL_DATA_BYTES = 1_900_000_000
#: Largest relative L2 error between a graph in ONNX Runtime and its PyTorch stage.
FP32_TOLERANCE = 1e-4
SIMPLIFIERS = ("onnxsim", "onnxslim", "none")
#: onnxsim passes that leave the standard operator set (see :func:`simplify`).
NON_PORTABLE_PASSES = ["fuse_attention"]
#: Operator domains every backend parses.
STANDARD_DOMAINS = ("", "ai.onnx")
#: onnxsim: same graph and speed as onnxslim on ViT-B, 6x quicker, and it simplifies ViT-H's
#: 2.5 GB encoder, where onnxslim 0.1.98 fails (its shape inference serialises the whole proto).
DEFAULT_SIMPLIFIER = "onnxsim"


@dataclass
class StageExport:
    """What :func:`export_stage` wrote and measured."""

    stage: str
    path: Path
    external_data: list[Path] = field(default_factory=list)
    nodes: int = 0
    bytes: int = 0
    seconds: dict = field(default_factory=dict)  # trace, simplify, check, save, verify
    rel_l2: float | None = None
    checked_at: dict = field(default_factory=dict)  # dynamic axis -> size used in the check


def sample_feeds(stage: StageIO | str, which: str = "opt", *, sizes: dict | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible inputs of a stage, shaped from the IO table: every dynamic axis at its ``min``,
    ``opt`` or ``max`` unless ``sizes`` (axis name -> size) says otherwise.

    Pixels and embeddings are standard normal; the initial point and prompt coordinates are token
    centres (as the pipeline feeds them), labels a random mix of occlusion and face.
    """
    stage = get_stage(stage) if isinstance(stage, str) else stage
    rng = np.random.default_rng(seed)
    sizes = dict(sizes or {})
    feeds = {}
    for spec in stage.inputs:
        shape = tuple(sizes.get(d.name, getattr(d, which)) if isinstance(d, Dim) else d
                      for d in spec.shape)
        if spec.name in (POINT_COORDS, INITIAL_POINT):
            tokens = rng.choice(len(TOKEN_CENTERS), size=int(np.prod(shape[:-1])), replace=False)
            value = TOKEN_CENTERS[tokens].reshape(shape)
        elif spec.name == POINT_LABELS:
            value = rng.choice([LABEL_POSITIVE, LABEL_NEGATIVE], size=shape)
        else:  # pixels, image embeddings, sparse prompts
            value = rng.standard_normal(shape)
        feeds[spec.name] = np.ascontiguousarray(value, dtype=spec.dtype)
        for axis, dim in zip(shape, spec.shape):
            if isinstance(dim, Dim):
                sizes.setdefault(dim.name, axis)
    return feeds


def dynamic_sizes(stage: StageIO, feeds: dict) -> dict:
    """The size of every dynamic axis in ``feeds`` (axis name -> size), e.g. ``{"num_points": 1478}``."""
    return {dim.name: int(feeds[spec.name].shape[axis]) for spec in stage.inputs
            for axis, dim in enumerate(spec.shape) if isinstance(dim, Dim)}


def _trace(module, stage: StageIO, feeds: dict, path: Path, opset: int) -> None:
    import torch

    args = tuple(torch.from_numpy(feeds[name]) for name in stage.input_names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in static shapes
        torch.onnx.export(module, args, str(path), input_names=stage.input_names,
                          output_names=stage.output_names, dynamic_axes=stage.dynamic_axes(),
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def simplify(model, tool: str = DEFAULT_SIMPLIFIER):
    """Constant folding and graph simplification with a well-kept tool (README: onnxsim was
    measured against onnxslim on these graphs and kept)."""
    if tool == "none":
        return model
    if tool == "onnxslim":
        onnxslim = require("onnxslim", "onnxslim")
        return onnxslim.slim(model)
    if tool == "onnxsim":
        onnxsim = require("onnxsim", "onnxsim")
        with contextlib.redirect_stdout(io.StringIO()) as said:  # its notes go to the log
            # onnxsim 0.8's fuse_attention pass rewrites attention into ONNX Runtime's contrib
            # op com.microsoft::Attention, which TensorRT's parser (and OpenVINO's) reject: the
            # graphs must stay in the standard domain for every backend.
            simplified, ok = onnxsim.simplify(model, skipped_optimizers=NON_PORTABLE_PASSES)
        if said.getvalue().strip():
            log.info("onnxsim: %s", " ".join(said.getvalue().split()))
        if not ok:
            raise ExportError("onnxsim: the simplified graph failed its own check")
        return simplified
    raise ExportError(f"simplifier {tool!r}: expected one of {', '.join(SIMPLIFIERS)}")


def weight_bytes(model) -> int:
    """Bytes of the graph's initializers and Constant nodes (what decides on external data)."""
    constants = [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
                 if a.type == a.TENSOR]
    return sum(len(t.raw_data) or t.ByteSize() for t in (*model.graph.initializer, *constants))


def save_model(model, path: Path) -> list[Path]:
    """Save ``model`` at ``path``, its weights in ``path.data`` when they pass 2 GB. Returns the
    external data files written."""
    import onnx

    if weight_bytes(model) <= EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path))
        honour_umask(path)
        return []
    data = path.with_name(path.name + ".data")
    externalisable(model)  # else folded constants stay inline (tens of MB on ViT-H)
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    honour_umask(path)
    honour_umask(data)
    return [data]


def externalisable(model, min_bytes: int = 1024) -> int:
    """Make every large tensor one that ``onnx.save``'s external data takes: the tensors of
    ``Constant`` nodes (the simplifier's folded constants) become initializers, the form whose
    external data every reader (ONNX Runtime, TensorRT's parser) supports, and values kept in
    ``float_data`` and the like (onnxsim writes some so) move to ``raw_data``. Returns how many
    tensors changed."""
    from onnx import numpy_helper

    keep, changed = [], 0
    for node in model.graph.node:
        tensor = next((a.t for a in node.attribute if a.name == "value" and a.type == a.TENSOR), None)
        if node.op_type == "Constant" and tensor is not None and tensor.ByteSize() >= min_bytes:
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            changed += 1
        else:
            keep.append(node)
    if len(keep) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(keep)
    for tensor in model.graph.initializer:
        if not tensor.raw_data and tensor.data_location != tensor.EXTERNAL \
                and tensor.ByteSize() >= min_bytes:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
            changed += 1
    return changed


def check_model(path: Path) -> None:
    """Full ``onnx.checker`` (shape inference included), by path so external data is allowed;
    and only standard-domain operators, so that TensorRT, OpenVINO and ONNX Runtime all parse it."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"'{path}': the ONNX checker refused the graph: "
                          f"{str(exc).splitlines()[0]}") from None
    model = onnx.load(str(path), load_external_data=False)
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node
                      if n.domain not in STANDARD_DOMAINS})
    if foreign:
        raise ExportError(f"'{path}': expected only standard ONNX operators, got {', '.join(foreign)} "
                          "(runtime-specific ops that TensorRT cannot parse)")


def ort_session(path: Path, threads: int = 0):
    """A CPU ONNX Runtime session for checking a graph, set up as the runtime's ONNX Runtime
    backend sets up its own, so a graph is checked the way it will run."""
    import onnxruntime as ort

    from s3pot.runtime.backends.onnxruntime.runner import CPU, session_options

    return ort.InferenceSession(str(path), session_options(threads), providers=[CPU])


def run_torch(module, stage: StageIO, feeds: dict) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        out = module(*(torch.from_numpy(feeds[name]) for name in stage.input_names))
    return [o.float().numpy() for o in (out if isinstance(out, tuple) else (out,))]


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    """Relative L2 error ``||got - want|| / ||want||``, in float64."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def compare(session, module, stage: StageIO, feeds: dict) -> float:
    """Largest relative L2 error over the stage's outputs, ONNX Runtime against PyTorch."""
    got = session.run(stage.output_names, feeds)
    want = run_torch(module, stage, feeds)
    errors = []
    for spec, g, w in zip(stage.outputs, got, want):
        if g.shape != w.shape:
            raise ExportError(f"stage {stage.name!r} output {spec.name!r}: expected shape "
                              f"{w.shape} (PyTorch), got {g.shape} (ONNX Runtime)")
        if not np.isfinite(g).all():
            raise ExportError(f"stage {stage.name!r} output {spec.name!r}: expected finite "
                              "values, got NaN/Inf in ONNX Runtime")
        errors.append(rel_l2(g, w))
    return max(errors)


#: Dynamic sizes of the export's own check: batch 1 (the encoder is the dearest stage to run
#: twice; tests cover batch 2) and the typical prompt count.
CHECK_SIZES = {"batch": 1}


def export_stage(module, stage: StageIO | str, path, *, opset: int = OPSET,
                 simplifier: str = DEFAULT_SIMPLIFIER, verify: bool = True,
                 tolerance: float = FP32_TOLERANCE) -> StageExport:
    """Export one stage module (``s3pot.models.STAGE_MODULES[stage](model)``) to ``path``.

    The graph's inputs and outputs are named, typed and given dynamic axes from the IO table.
    With ``verify``, one ONNX Runtime run at the check sizes must match PyTorch within
    ``tolerance`` (relative L2), else :class:`ExportError`.
    """
    import onnx

    stage = get_stage(stage) if isinstance(stage, str) else stage
    path = Path(path)
    result = StageExport(stage=stage.name, path=path)
    feeds = sample_feeds(stage, "opt")  # tracing at opt keeps every axis distinct from 1
    with tempfile.TemporaryDirectory(prefix=f"s3pot-export-{stage.name}-") as scratch:
        raw = Path(scratch) / f"{stage.name}.onnx"
        start = time.perf_counter()
        _trace(module, stage, feeds, raw, opset)
        result.seconds["trace"] = time.perf_counter() - start

        start = time.perf_counter()
        model = simplify(onnx.load(str(raw)), simplifier)
        model.ir_version = IR_VERSION
        result.seconds["simplify"] = time.perf_counter() - start
    _check_io(model, stage)

    start = time.perf_counter()
    result.external_data = save_model(model, path)
    check_model(path)
    result.seconds["save_check"] = time.perf_counter() - start
    result.nodes = len(model.graph.node)
    result.bytes = path.stat().st_size + sum(p.stat().st_size for p in result.external_data)
    del model

    if verify:
        start = time.perf_counter()
        check_feeds = sample_feeds(stage, "opt", sizes=CHECK_SIZES, seed=1)
        result.checked_at = dynamic_sizes(stage, check_feeds)
        result.rel_l2 = compare(ort_session(path), module, stage, check_feeds)
        result.seconds["verify"] = time.perf_counter() - start
        if not result.rel_l2 <= tolerance:
            raise ExportError(f"stage {stage.name!r}: ONNX Runtime differs from PyTorch by "
                              f"relative L2 {result.rel_l2:.2e}, expected at most {tolerance:.0e}")
    return result


def _check_io(model, stage: StageIO) -> None:
    """The graph's inputs and outputs are the IO table's, in its order."""
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != stage.input_names or outputs != stage.output_names:
        raise ExportError(f"stage {stage.name!r}: expected inputs {stage.input_names} and outputs "
                          f"{stage.output_names}, the traced graph has {inputs} and {outputs}")


__all__ = ["DEFAULT_SIMPLIFIER", "EXTERNAL_DATA_BYTES", "FP32_TOLERANCE", "IR_VERSION", "OPSET",
           "SIMPLIFIERS", "StageExport", "check_model", "compare", "export_stage", "ort_session",
           "rel_l2", "sample_feeds", "save_model", "simplify"]
