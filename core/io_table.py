"""The stage IO table: every exported stage's tensors, declared once.

Exporter, engine builder, runtime backends and tests import the names, dtypes, shapes and dynamic
axes from here; a test fails if a tensor name is written as a string literal anywhere else.

=========  ==============================================  =======================================
stage      inputs                                          outputs
=========  ==============================================  =======================================
encoder    ``pixels`` B x 3 x 1024 x 1024                  ``image_embeddings`` B x 256 x 64 x 64
fe         ``image_embeddings`` B x 256 x 64 x 64,         ``enhanced_tokens`` B x 4096 x 256
           ``initial_point`` B x 1 x 2
sa         ``point_coords`` 1 x N x 2,                     ``sparse_prompts`` 1 x (N+1) x 256
           ``point_labels`` 1 x N
decoder    ``image_embeddings`` 1 x 256 x 64 x 64,         ``low_res_logits`` 1 x 1 x 256 x 256
           ``sparse_prompts`` 1 x (N+1) x 256
=========  ==============================================  =======================================

``B`` is the image batch (the image and its reference run as one batch of 2); ``N`` the number of
point prompts, which is the number of face tokens (every face token of the image is either an
occlusion or a face prompt), at most the 4096 tokens of the grid. Point coordinates are pixels
``(x, y)`` of the 1024 x 1024 frame; labels are SAM's (1 positive, 0 negative) as float32, as in
SAM's own ONNX export (no int64 inputs for TensorRT).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import S3potInputError
from .spec import GRID_SIZE, IMAGE_SIZE, LOW_RES_SIZE, NUM_TOKENS, PROMPT_DIM

# -- tensor names: the only place they are written ------------------------------------------------
PIXELS = "pixels"
IMAGE_EMBEDDINGS = "image_embeddings"
INITIAL_POINT = "initial_point"
ENHANCED_TOKENS = "enhanced_tokens"
POINT_COORDS = "point_coords"
POINT_LABELS = "point_labels"
SPARSE_PROMPTS = "sparse_prompts"
LOW_RES_LOGITS = "low_res_logits"

# -- dynamic axes -----------------------------------------------------------------------------
#: The encoder's usual batch: one image and its reference.
PAIR_BATCH = 2
#: Largest image batch an export or engine accepts: four faces of one frame with their
#: references, or eight faces whose references are cached (``Pipeline.segment_batch``). TensorRT
#: sizes its activation memory for this maximum.
MAX_IMAGE_BATCH = 8
#: Face tokens of the aligned test face (``benchmarks/data/obama_face``, paper face set): the prompt
#: count TensorRT tunes its kernels for (a test recomputes it from that sample).
TYPICAL_POINTS = 1478


@dataclass(frozen=True)
class Dim:
    """A dynamic axis: its name in the ONNX graph and its min / opt / max sizes."""

    name: str
    min: int
    opt: int
    max: int

    def plus(self, n: int) -> "Dim":
        """This axis grown by ``n`` (SAM appends one padding point to the prompts)."""
        return Dim(f"{self.name}_plus_{n}", self.min + n, self.opt + n, self.max + n)

    def contains(self, size: int) -> bool:
        return self.min <= size <= self.max


IMAGE_BATCH = Dim("batch", 1, PAIR_BATCH, MAX_IMAGE_BATCH)
#: FE runs per face: its image and reference (prompt selection needs the pair, not more).
PAIR = Dim("pair", 1, PAIR_BATCH, PAIR_BATCH)
NUM_POINTS = Dim("num_points", 1, TYPICAL_POINTS, NUM_TOKENS)
NUM_PROMPTS = NUM_POINTS.plus(1)  # the points and SAM's padding point

Axis = int | Dim


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a stage: name, NumPy dtype name and shape (ints or :class:`Dim`)."""

    name: str
    dtype: str
    shape: tuple[Axis, ...]
    doc: str = ""

    def shape_at(self, which: str) -> tuple[int, ...]:
        """The shape with every dynamic axis at its ``min``, ``opt`` or ``max``."""
        return tuple(getattr(d, which) if isinstance(d, Dim) else d for d in self.shape)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d.name for i, d in enumerate(self.shape) if isinstance(d, Dim)}

    def describe(self) -> str:
        dims = " x ".join(d.name if isinstance(d, Dim) else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} {dims}"

    def check(self, array, where: str) -> np.ndarray:
        """``array`` as a C-contiguous array of this tensor's dtype, after checking its dtype
        and shape; a mismatch raises :class:`S3potInputError` naming the tensor."""
        array = np.asarray(array)
        if array.dtype != np.dtype(self.dtype):
            raise S3potInputError(f"{where}: tensor {self.name!r}: expected dtype {self.dtype}, "
                                  f"got {array.dtype}")
        ok = array.ndim == len(self.shape) and all(
            d.contains(n) if isinstance(d, Dim) else n == d for d, n in zip(self.shape, array.shape))
        if not ok:
            raise S3potInputError(f"{where}: tensor {self.name!r}: expected shape "
                                  f"{self.shape_text()}, got {tuple(array.shape)}")
        return np.ascontiguousarray(array)

    def shape_text(self) -> str:
        return "(" + ", ".join(f"{d.name} in {d.min}..{d.max}" if isinstance(d, Dim) else str(d)
                               for d in self.shape) + ")"

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype,
                "shape": [d.__dict__ if isinstance(d, Dim) else d for d in self.shape]}


@dataclass(frozen=True)
class StageIO:
    """The tensors of one exported stage."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str = ""

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, f"stage {self.name!r} input")

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, f"stage {self.name!r} output")

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``torch.onnx.export``'s ``dynamic_axes`` for this stage (inputs and outputs)."""
        return {t.name: t.dynamic_axes for t in (*self.inputs, *self.outputs) if t.dynamic_axes}

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimisation profile: input name -> (min, opt, max) shapes."""
        return {t.name: (t.shape_at("min"), t.shape_at("opt"), t.shape_at("max"))
                for t in self.inputs}

    @property
    def is_dynamic(self) -> bool:
        return any(t.dynamic_axes for t in self.inputs)

    def check_feeds(self, feeds: dict, where: str | None = None) -> dict[str, np.ndarray]:
        """Every input present, nothing else, each of the right dtype and shape; dynamic axes
        that share a name must agree. Returns the feeds as contiguous arrays."""
        where = where or f"stage {self.name!r}"
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise S3potInputError(
                f"{where}: expected inputs {self.input_names}, got {sorted(feeds)}"
                + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
        checked = {t.name: t.check(feeds[t.name], where) for t in self.inputs}
        sizes: dict[str, tuple[str, int]] = {}
        for t in self.inputs:
            for axis, name in t.dynamic_axes.items():
                size = checked[t.name].shape[axis]
                if name in sizes and sizes[name][1] != size:
                    raise S3potInputError(
                        f"{where}: axis {name!r} is {sizes[name][1]} in {sizes[name][0]!r} but "
                        f"{size} in {t.name!r}; expected the same size")
                sizes[name] = (t.name, size)
        return checked

    def to_json(self) -> dict:
        return {"inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs]}


def _by_name(specs, name: str, what: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise S3potInputError(f"{what} {name!r}: expected one of {[s.name for s in specs]}")


def _embeddings(batch: Axis) -> TensorSpec:
    return TensorSpec(IMAGE_EMBEDDINGS, "float32", (batch, PROMPT_DIM, GRID_SIZE, GRID_SIZE),
                      "SAM image embeddings (encoder with neck)")


ENCODER = StageIO(
    "encoder",
    inputs=(TensorSpec(PIXELS, "float32", (IMAGE_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE),
                       "normalised RGB: the image, then its reference"),),
    outputs=(_embeddings(IMAGE_BATCH),),
    doc="SPEC stage 1: SAM's image encoder with its neck")
FE = StageIO(
    "fe",
    inputs=(_embeddings(PAIR),
            TensorSpec(INITIAL_POINT, "float32", (PAIR, 1, 2),
                       "the initial prompt's pixel (x, y), a positive point")),
    outputs=(TensorSpec(ENHANCED_TOKENS, "float32", (PAIR, NUM_TOKENS, PROMPT_DIM),
                        "image tokens after SAM's two-way transformer, raster order"),),
    doc="SPEC stage 3: feature enhancement")
SA = StageIO(
    "sa",
    inputs=(TensorSpec(POINT_COORDS, "float32", (1, NUM_POINTS, 2), "prompt pixels (x, y)"),
            TensorSpec(POINT_LABELS, "float32", (1, NUM_POINTS),
                       "1 occlusion (positive), 0 face (negative)")),
    outputs=(TensorSpec(SPARSE_PROMPTS, "float32", (1, NUM_PROMPTS, PROMPT_DIM),
                        "re-weighted prompt embeddings, SAM's padding point last"),),
    doc="SPEC stages 5-6: prompt encoding and self-attention re-weighting")
DECODER = StageIO(
    "decoder",
    inputs=(_embeddings(1),
            TensorSpec(SPARSE_PROMPTS, "float32", (1, NUM_PROMPTS, PROMPT_DIM),
                       "re-weighted prompt embeddings")),
    outputs=(TensorSpec(LOW_RES_LOGITS, "float32", (1, 1, LOW_RES_SIZE, LOW_RES_SIZE),
                        "single-mask occlusion logits"),),
    doc="SPEC stage 7: SAM's mask decoder, single-mask output")

#: The exported stages in pipeline order.
STAGES: dict[str, StageIO] = {s.name: s for s in (ENCODER, FE, SA, DECODER)}
#: Every tensor name of the table.
TENSOR_NAMES = frozenset(t.name for s in STAGES.values() for t in (*s.inputs, *s.outputs))


def get_stage(name: str) -> StageIO:
    """The IO of stage ``name``; an unknown name lists the valid ones."""
    try:
        return STAGES[name]
    except KeyError:
        raise S3potInputError(f"stage {name!r}: expected one of {', '.join(STAGES)}") from None


def table_json() -> dict:
    """The whole table as JSON-ready data (written into every export manifest)."""
    return {name: stage.to_json() for name, stage in STAGES.items()}
