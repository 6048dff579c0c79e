"""TensorRT backend: the engines ``s3pot build`` wrote into an export folder, on an NVIDIA GPU.

=============  ===================================================================================
module         job
=============  ===================================================================================
:mod:`.loader` finds ``DIR/engines/PRECISION/STAGE.engine`` and checks each sidecar against this
               machine's TensorRT and GPU before any plan is deserialised
:mod:`.runner` :class:`TensorRTRunner`: deserialise, allocate once (Numba device + pinned memory),
               ``execute_async_v3`` on one stream; prompt selection on the device
:mod:`.graphs` CUDA graphs for the encoder and FE through cuda-python, when it is installed
=============  ===================================================================================

::

    from s3pot.runtime.backends import ModelSpec, create_runner

    with create_runner("tensorrt", ModelSpec(folder=export_dir, precision="fp16")) as runner:
        embeddings = runner.encode(pixels)  # 2 x 3 x 1024 x 1024 -> 2 x 256 x 64 x 64

Importing this package imports neither tensorrt, nor numba.cuda, nor torch, pycuda or
cuda-python: :meth:`TensorRTRunner.activate` does, and without TensorRT it raises
:class:`~s3pot.core.errors.MissingDependencyError` carrying the install command.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from s3pot.core.errors import S3potInputError

from .loader import EngineFolder, check_engines, find_engines
from .runner import GRAPH_STAGES, TensorRTRunner

if TYPE_CHECKING:
    from .. import ModelSpec

#: Devices the backend accepts: the current CUDA device (pick another with CUDA_VISIBLE_DEVICES).
DEVICES = ("auto", "cuda", "cuda:0")


def create_runner(spec: "ModelSpec") -> TensorRTRunner:
    """A (not yet activated) runner of the engines of export folder ``spec.folder`` at
    ``spec.precision`` ("fp32" or "fp16"); ``spec.variant``, when given, must be the export's."""
    if spec.folder is None:
        raise S3potInputError("tensorrt backend: expected an export folder holding engines "
                              "(ModelSpec.folder, built with `s3pot build --model DIR`), got none")
    if spec.device not in DEVICES:
        raise S3potInputError(f"tensorrt backend: device: expected one of {', '.join(DEVICES)} "
                              f"(TensorRT runs on an NVIDIA GPU; choose one with "
                              f"CUDA_VISIBLE_DEVICES), got {spec.device!r}")
    return TensorRTRunner(find_engines(spec.folder, precision=spec.precision, variant=spec.variant))


__all__ = ["DEVICES", "EngineFolder", "GRAPH_STAGES", "TensorRTRunner", "check_engines",
           "create_runner", "find_engines"]
