"""``--backend auto``: TensorRT where the export folder has engines and there is a GPU to run
them, else ONNX Runtime on the export folder (its CUDA provider where it works, else the CPU),
else PyTorch (no export folder: the modules themselves). The choice comes with its reason."""
from __future__ import annotations

import logging

from s3pot.core.errors import MissingDependencyError
from s3pot.core.machine import installed

log = logging.getLogger(__name__)


def engines_present(folder, precision: str) -> bool:
    """Whether ``folder`` has an engine of every stage at ``precision`` (``s3pot build``)."""
    from s3pot.core.sidecar import engine_paths

    return all(path.is_file() for path in engine_paths(folder, precision).values())


def choose(spec) -> tuple[str, str]:
    """``(backend name, why)`` for ``spec`` (a :class:`~s3pot.runtime.backends.ModelSpec`)."""
    from s3pot.core.gpu import nvidia_gpu_present

    if spec.folder is None:
        name, why = "torch", "no --model export folder: the PyTorch modules run"
    elif spec.precision == "int8":
        if not installed("openvino"):
            raise MissingDependencyError("--backend auto --precision int8: the INT8 encoder runs "
                                         "in OpenVINO, which is not installed: pip install openvino")
        name, why = "openvino", "int8: the INT8 encoder of `s3pot quantize` runs in OpenVINO"
    else:
        missing = []
        if not engines_present(spec.folder, spec.precision):
            missing.append(f"no {spec.precision} engines (s3pot build)")
        if not installed("tensorrt"):
            missing.append("TensorRT not installed")
        if spec.device != "cpu" and not nvidia_gpu_present():
            missing.append("no NVIDIA GPU")
        if spec.device == "cpu":
            missing.append("--device cpu")
        if not missing:
            name, why = "tensorrt", f"{spec.precision} engines, TensorRT and a GPU are present"
        elif installed("onnxruntime"):
            name, why = "onnxruntime", "not tensorrt: " + ", ".join(missing)
        else:
            raise MissingDependencyError(
                f"--backend auto: --model '{spec.folder}' needs ONNX Runtime or TensorRT, and "
                "neither is installed: pip install onnxruntime-gpu")
    log.info("backend auto: %s (%s)", name, why)
    return name, why
