"""What to build for a TensorRT major version and a precision, decided once.

The builder (:mod:`.builder`) and the printed ``trtexec`` / ``polygraphy`` commands
(:mod:`.commands`) both follow this table, so the two cannot drift apart.

=====  =========  ===========  ========  ======================================================
major  precision  ONNX parsed  typing    builder settings
=====  =========  ===========  ========  ======================================================
10     fp32       fp32         weak      TF32 cleared (true FP32)
10     fp16       fp32         weak      FP16 flag; norm / softmax / reduce layers pinned to
                                         FP32 on their float outputs; OBEY_PRECISION_CONSTRAINTS
11     fp32       fp32         strong    TF32 cleared
11     fp16       fp16         strong    none: the mixed-precision ONNX carries the FP32 islands
                                         as Casts (11.x has no FP16 flag and no per-layer
                                         precision API)
=====  =========  ===========  ========  ======================================================
"""
from __future__ import annotations

from dataclasses import dataclass

from s3pot.core.errors import ExportError
from s3pot.core.manifest import PRECISIONS

from ..fp16 import FP32_OPS
from s3pot.core.tensorrt import SUPPORTED_MAJORS

#: TensorRT layer types computed in FP32 inside an FP16 engine (TensorRT 10, weak typing).
FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")
#: ... and the element-wise / unary operations of a LayerNorm written out as mean, pow, sqrt
#: (SAM's LayerNorm2d in the neck), which overflow in FP16 (NVIDIA/TensorRT#3692).
FP32_ELEMENTWISE_OPS = ("POW",)
FP32_UNARY_OPS = ("SQRT",)
#: The ONNX operators those layers come from (for trtexec's / polygraphy's per-layer options):
#: the same list the mixed-precision graph keeps in FP32.
FP32_ONNX_OPS = FP32_OPS


@dataclass(frozen=True)
class Recipe:
    """How one engine is built.

    ``onnx_precision`` is the export graph parsed; ``strongly_typed`` the network creation flag;
    ``fp16_flag`` sets ``BuilderFlag.FP16``; ``pin_fp32`` pins the FP32 layer types with
    ``OBEY_PRECISION_CONSTRAINTS``; ``tf32`` False clears ``BuilderFlag.TF32``.
    """

    tensorrt_major: int
    precision: str
    onnx_precision: str
    strongly_typed: bool
    fp16_flag: bool
    pin_fp32: bool
    tf32: bool

    @property
    def typing(self) -> str:
        return "strong" if self.strongly_typed else "weak"

    def describe(self) -> str:
        if self.precision == "fp32":
            return f"TensorRT {self.tensorrt_major}: FP32 ({self.typing} typing), TF32 off"
        if self.pin_fp32:
            return (f"TensorRT {self.tensorrt_major}: FP16 (weak typing), norm / softmax / "
                    "reduce layers pinned to FP32, precision constraints obeyed")
        return (f"TensorRT {self.tensorrt_major}: strongly typed, from the mixed-precision fp16 "
                "ONNX, no precision flags")


def recipe_for(tensorrt_major: int, precision: str) -> Recipe:
    """The recipe of ``precision`` ("fp32" or "fp16") on TensorRT ``tensorrt_major``.

    Majors above 11 are taken as 11 (strongly typed only); below 10 are refused.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if tensorrt_major < SUPPORTED_MAJORS[0]:
        raise ExportError(f"TensorRT {tensorrt_major}.x: expected 10.x or 11.x")
    strong = tensorrt_major >= 11
    fp16 = precision == "fp16"
    return Recipe(tensorrt_major=tensorrt_major, precision=precision,
                  onnx_precision=precision if strong else "fp32", strongly_typed=strong,
                  fp16_flag=fp16 and not strong, pin_fp32=fp16 and not strong, tf32=fp16)


def is_fp32_onnx_op(op_type: str) -> bool:
    return op_type in FP32_ONNX_OPS
