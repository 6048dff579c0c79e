"""Say what this machine can run: GPU, CUDA, TensorRT, ONNX Runtime providers, PyTorch, Numba's
kernel cache, the front end's LiteRT, and with --model the state of an export folder and its
engines, in one table.

Nothing heavy is loaded to answer: versions come from package metadata, the GPU from cuda-python
or nvidia-smi, engines are judged by their sidecars (never deserialised). Exits 1 when --model
is given and nothing in it can run here, else 0.
"""
from __future__ import annotations

from pathlib import Path

from s3pot.core.errors import S3potError
from s3pot.core.machine import package_version

OK, NO, WARN = "ok", "no", "warn"


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="also check this export folder (graphs against the manifest, engines "
                             "against this machine)")


def _version(package: str) -> str | None:
    return package_version(package)[1]


def _gpu_rows(rows: list) -> object:
    from s3pot.core.gpu import query_gpu

    try:
        gpu = query_gpu()
    except S3potError as exc:
        rows.append(("GPU", NO, str(exc).split(": a TensorRT")[0]))
        return None
    rows.append(("GPU", OK, f"{gpu.name} (compute capability {gpu.compute_capability}, "
                            f"from {gpu.source})"))
    return gpu


def _tensorrt_row(rows: list) -> str | None:
    from s3pot.core.tensorrt import INSTALL_HINT, import_tensorrt

    try:
        tensorrt = import_tensorrt()
    except S3potError as exc:
        installed = package_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12")[1]
        rows.append(("TensorRT", WARN if installed else NO,
                     str(exc) if installed else f"not installed: {INSTALL_HINT.split(' (')[0]} "
                                                "for --backend tensorrt and s3pot build"))
        return None
    rows.append(("TensorRT", OK, str(tensorrt.__version__)))
    return str(tensorrt.__version__)


def _onnxruntime_row(rows: list) -> None:
    package, version = package_version("onnxruntime-gpu", "onnxruntime")
    if version is None:
        rows.append(("ONNX Runtime", NO, "not installed: pip install onnxruntime-gpu"))
        return
    import onnxruntime as ort

    from s3pot.core.gpu import nvidia_gpu_present

    providers = ort.get_available_providers()
    usable = [p for p in providers if p == "CPUExecutionProvider" or nvidia_gpu_present()]
    rows.append(("ONNX Runtime", OK, f"{package} {version}; providers built in: "
                                     f"{', '.join(providers)}; usable here: {', '.join(usable)}"))


def _openvino_row(rows: list) -> None:
    version = _version("openvino")
    if version is None:
        rows.append(("OpenVINO", WARN, "not installed (optional: --backend openvino, FP32, BF16 "
                                       "or INT8 on the CPU): pip install 's3pot-rt[openvino]'"))
        return
    from s3pot.runtime.backends.openvino import cpu_precisions

    rows.append(("OpenVINO", OK, f"{version}; CPU precisions: {', '.join(cpu_precisions())}"))


def _frontend_row(rows: list) -> None:
    version = _version("ai-edge-litert")
    if version is None:
        from s3pot.frontend.litert import INSTALL_HINT

        rows.append(("Front end", WARN, "LiteRT not installed (optional: s3pot prepare, segment "
                                        f"--video): pip install {INSTALL_HINT}"))
        return
    rows.append(("Front end", OK, f"ai-edge-litert {version}: s3pot prepare and segment --video"))


def _torch_row(rows: list) -> None:
    version = _version("torch")
    if version is None:
        rows.append(("PyTorch", NO, "not installed (only --backend torch and s3pot export need "
                                    "it): pip install 's3pot-rt[torch]'"))
        return
    import torch

    cuda = (f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)"
            if torch.cuda.is_available() else "CPU build or no GPU visible")
    rows.append(("PyTorch", OK, f"{version} ({cuda})"))


def _numba_rows(rows: list) -> None:
    from s3pot.kernels import numba_cpu

    warm = numba_cpu.cache_is_warm()
    rows.append(("Numba kernels", OK if warm else WARN,
                 f"numba {_version('numba')}; " + ("compiled and cached" if warm else
                                                   "not compiled yet (the first run compiles them, "
                                                   "about 25 s)")))
    # cuda-python's runtime bindings ship as cuda-bindings (12.6 on; PyTorch's CUDA 13 wheels
    # bring it without the cuda-python meta package)
    name, cuda_python = package_version("cuda-python", "cuda-bindings")
    rows.append(("cuda-python", OK if cuda_python else WARN,
                 f"{name} {cuda_python}" if cuda_python else
                 "not installed: TensorRT runs without CUDA graphs (pip install 'cuda-python>=12')"))


def _model_rows(rows: list, folder: Path, gpu, trt_version: str | None) -> bool:
    """Rows for an export folder; True when at least one backend can run it here."""
    from s3pot.core.io_table import STAGES
    from s3pot.core.manifest import PRECISIONS, read_manifest, verify_graph

    try:
        manifest = read_manifest(folder)
    except S3potError as exc:
        rows.append((f"export {folder}", NO, str(exc)))
        return False
    runnable = False
    for precision in PRECISIONS:
        if all(precision in manifest["graphs"].get(s, {}) for s in STAGES):
            try:
                for stage in STAGES:
                    verify_graph(folder, manifest, stage, precision)
            except S3potError as exc:
                rows.append((f"graphs {precision}", NO, str(exc)))
            else:
                runnable = True
                rows.append((f"graphs {precision}", OK, f"{manifest['variant']}, four stages "
                                                        "verified (--backend onnxruntime)"))
        runnable = _engine_row(rows, folder, precision, gpu, trt_version) or runnable
    _int8_row(rows, folder, manifest)
    return runnable


def _int8_row(rows: list, folder: Path, manifest: dict) -> None:
    """A row for the INT8 encoder of `s3pot quantize`, when the folder has one."""
    from s3pot.core.quantized import check_int8, int8_paths

    if not any(path.is_file() for path in int8_paths(folder).values()):
        return
    try:
        record = check_int8(folder, manifest)
    except S3potError as exc:
        rows.append(("encoder int8", NO, str(exc)))
        return
    rows.append(("encoder int8", OK, f"quantized by NNCF {record['nncf_version']}, relative L2 "
                                     f"{record['check']['rel_l2']:.1e} against FP32 "
                                     "(--backend openvino --precision int8)"))


def _engine_row(rows: list, folder: Path, precision: str, gpu, trt_version: str | None) -> bool:
    """A row for the engines of ``precision`` (when there are any); True when they run here."""
    from s3pot.core.sidecar import engine_paths
    from s3pot.runtime.backends.tensorrt.loader import check_engines, find_engines

    if not any(path.is_file() for path in engine_paths(folder, precision).values()):
        return False
    name = f"engines {precision}"
    if gpu is None or trt_version is None:
        rows.append((name, WARN, f"present, but this machine has no {'GPU' if gpu is None else 'TensorRT'}"))
        return False
    try:
        check_engines(find_engines(folder, precision=precision), tensorrt_version=trt_version, gpu=gpu)
    except S3potError as exc:
        rows.append((name, NO, str(exc)))
        return False
    rows.append((name, OK, "four engines built for this TensorRT and GPU (--backend tensorrt)"))
    return True


def format_table(rows: list) -> str:
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {status:<4}  {detail}" for name, status, detail in rows)


def run(args) -> int:
    rows: list = []
    gpu = _gpu_rows(rows)
    trt_version = _tensorrt_row(rows)
    _onnxruntime_row(rows)
    _openvino_row(rows)
    _frontend_row(rows)
    _torch_row(rows)
    _numba_rows(rows)
    runnable = True
    if args.model is not None:
        runnable = _model_rows(rows, args.model, gpu, trt_version)
    print(format_table(rows))
    return 0 if runnable else 1
