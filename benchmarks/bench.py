"""``s3pot bench``: latency at 1024 x 1024, stage by stage, for every backend and precision this
machine has, beside the authors' way of running S3POT, in one run.

Each path (the baseline, then every backend at every precision) runs in its own process
(:mod:`.child`): build, ``warmup`` samples, ``runs`` timed samples, then the fixed-reference
(video) case with the reference's embedding cached. Its peak host memory is that process's own
(``VmHWM``). Paths run one after another, or interleaved round by round (:func:`drive_paths`).
The baseline's first sample is recorded; its prompts, mask and each stage's inputs and outputs are
the reference every other path is compared with (prompts, mask IoU, relative error per stage on
the same stage inputs). The floor (:mod:`.floor`) puts each stage's FLOPs over its library's
measured GEMM rate.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.core.machine import cpuinfo, installed, package_version

from s3pot.core.io_table import STAGES
from s3pot.core.spec import IMAGE_SIZE

from .baseline import STAGE_KEYS
from .child import SETTLE_S

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"
#: The sample every path segments: an aligned face with a cup over the mouth (benchmarks/data).
SAMPLE = ("obama_face.jpg", "obama_face_ref.jpg", "obama_face_parsing_mask.npy")
SCHEMA = 1
BASELINE = "baseline"
#: CPU flags that decide which reduced-precision paths pay.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8")


#: How the C library's allocator treats freed memory in every path's process (``--malloc``).
#: glibc hands a large freed block (from 128 KB up, 32 MB at most) back to the kernel and maps
#: fresh pages for the next one, one page fault per 4 KB page. PyTorch eager frees and allocates
#: its activations on every call: on the README's VM the baseline's ViT-B encoder took about 4
#: million page faults per image, and its samples 32 s against 22 s with ``keep`` (the other paths
#: re-use their buffers and did not move). ``keep`` stops glibc from mapping and trimming, so that
#: freed memory stays in the process and is re-used.
MALLOC = {
    "system": {"env": {}, "label": "the C library's defaults (glibc maps large blocks and "
                                     "returns them when freed)"},
    "keep": {"env": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2 ** 64 - 1)},
             "label": "glibc keeps freed memory in the process (MALLOC_MMAP_MAX_=0, "
                      "MALLOC_TRIM_THRESHOLD_=SIZE_MAX), every path alike"},
}


@dataclass(frozen=True)
class BenchPath:
    """One measured way of running S3POT."""

    backend: str  # "authors" (the baseline), "torch", "onnxruntime", "openvino", "tensorrt"
    precision: str
    device: str  # "cpu" or "cuda"

    @property
    def name(self) -> str:
        return BASELINE if self.backend == "authors" else f"{self.backend} {self.precision}"

    @property
    def reduced(self) -> bool:
        return self.precision != "fp32"


# -- what this machine has ----------------------------------------------------------------------
#: Library -> the distributions that provide it, first match wins (for the report's versions).
DISTRIBUTIONS = {"numpy": ("numpy",), "torch": ("torch",),
                 "onnxruntime": ("onnxruntime-gpu", "onnxruntime"), "openvino": ("openvino",),
                 "tensorrt": ("tensorrt",), "numba": ("numba",),
                 "opencv": ("opencv-python-headless", "opencv-python")}


def cpu_flags() -> list[str]:
    present = set((cpuinfo("flags") or "").split())
    return [flag for flag in CPU_FLAGS if flag in present]


def environment() -> dict:
    """The machine and the libraries, for the JSON and the report's header."""
    from s3pot.core.errors import NoGpuError
    from s3pot.core.gpu import nvidia_gpu_present, query_gpu

    gpu = None
    if nvidia_gpu_present():
        try:
            gpu = asdict(query_gpu())
        except NoGpuError as exc:
            gpu = {"error": str(exc)}
    return {"machine": platform.machine(), "cpu": cpuinfo("model name") or platform.processor(),
            "cores": os.cpu_count(), "cpu_flags": cpu_flags(), "gpu": gpu,
            "python": platform.python_version(),
            "versions": {lib: package_version(*names)[1] for lib, names in DISTRIBUTIONS.items()}}


def available_paths(gpu: bool, folder: Path | None = None) -> list[BenchPath]:
    """Every backend and precision that can run here, the baseline first. Reduced precision is
    listed only where the hardware runs it natively (BF16 on CPUs with AVX512-BF16 or AMX)."""
    device = "cuda" if gpu else "cpu"
    paths = [BenchPath("authors", "fp32", device), BenchPath("torch", "fp32", device)]
    bf16_cpu = {"avx512_bf16", "amx_bf16"} & set(cpu_flags())
    if gpu:
        paths.append(BenchPath("torch", "fp16", device))
    elif bf16_cpu:
        paths.append(BenchPath("torch", "bf16", device))
    if installed("onnxruntime") and (not gpu or onnxruntime_cuda()):
        paths.append(BenchPath("onnxruntime", "fp32", device))
        if gpu:
            paths.append(BenchPath("onnxruntime", "fp16", device))
    if not gpu and installed("openvino"):
        from s3pot.core.quantized import int8_present
        from s3pot.runtime.backends.openvino import cpu_precisions

        # INT8 where the CPU has VNNI / AMX and the encoder is quantized or NNCF can quantize it
        int8 = installed("nncf") or (folder is not None and int8_present(folder))
        paths += [BenchPath("openvino", precision, "cpu") for precision in cpu_precisions()
                  if precision != "int8" or int8]
    if gpu and installed("tensorrt") and folder is not None:
        from s3pot.runtime.backends.auto import engines_present

        paths += [BenchPath("tensorrt", precision, device) for precision in ("fp32", "fp16")
                  if engines_present(folder, precision)]
    return paths


def onnxruntime_cuda() -> bool:
    """Whether this ONNX Runtime has its CUDA execution provider (``onnxruntime-gpu``; the CPU
    wheel, as on a GPU machine without it, has none: its GPU paths are then not listed)."""
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


#: Backends that run the export folder's graphs or engines (the others build the PyTorch model).
GRAPH_BACKENDS = ("onnxruntime", "openvino", "tensorrt")


#: Paths left out unless their backend is named: PyTorch on the CPU (FP32, and BF16 under
#: autocast) runs the PyTorch modules eagerly, which no deployment on a CPU would; the exported
#: graphs in ONNX Runtime and OpenVINO are the CPU paths (and `s3pot bench` stays within 10 minutes).
ON_REQUEST = {("torch", "fp32", "cpu"), ("torch", "bf16", "cpu")}


def select_paths(paths: list[BenchPath], backends, precisions) -> list[BenchPath]:
    """The paths the user asked for (all but :data:`ON_REQUEST` when no backend is named); the
    baseline always stays (every ratio needs it)."""
    known = {p.backend for p in paths} | {"torch", "onnxruntime", "openvino", "tensorrt"}
    for backend in backends or ():
        if backend not in known:
            raise S3potInputError(f"--backends: expected some of {', '.join(sorted(known))}, got "
                                  f"{backend!r}")
    chosen = [p for p in paths if p.backend == "authors" or (
        (p.backend in backends if backends else (p.backend, p.precision, p.device) not in ON_REQUEST)
        and (not precisions or p.precision in precisions))]
    if len(chosen) == 1:
        have = ", ".join(p.name for p in paths[1:])
        raise S3potInputError(f"--backends/--precisions: nothing on this machine matches; it has "
                              f"{have or 'no backend besides the baseline'}")
    return chosen


# -- the model -----------------------------------------------------------------------------------
def weights_record(variant: str, checkpoint, adapter, seed: int) -> dict:
    if checkpoint is None:
        if adapter is not None:
            raise S3potInputError("--adapter: needs --checkpoint (an adapter on random SAM weights "
                                  "measures nothing the random weights do not)")
        return {"kind": "random", "seed": seed}
    return {"kind": "checkpoint", "checkpoint": str(checkpoint),
            "adapter": None if adapter is None else str(adapter)}


def ensure_export(variant: str, weights: dict, out: Path, model: Path | None, gpu: bool,
                  say) -> tuple[Path, dict]:
    """The export folder the graph backends run: ``model`` when given (its weights must be the
    ones the PyTorch paths load), else ``out/export-VARIANT`` (made once, reused while it matches)."""
    from s3pot.core.manifest import read_manifest

    precisions = ("fp32", "fp16") if gpu else ("fp32",)
    if model is not None:
        manifest = read_manifest(model)
        if manifest["variant"] != variant:
            raise S3potInputError(f"--model '{model}': expected variant {variant!r} (--variant), "
                                  f"got {manifest['variant']!r}")
        _check_weights(manifest["weights"], weights, model)
        return model, manifest
    folder = out / f"export-{variant}"
    try:
        manifest = read_manifest(folder)
        _check_weights(manifest["weights"], weights, folder)
        if set(precisions) <= set(manifest["precisions"]):
            say(f"reusing the export in {folder}")
            return folder, manifest
    except Exception:  # absent, damaged or of other weights: made again
        pass
    from s3pot.export.folder import ExportRequest, export_folder

    random = weights["kind"] == "random"
    # The export's own check (one ONNX Runtime run per graph against PyTorch) is left to the
    # bench, which compares every stage of every path with PyTorch's (see finish()).
    request = ExportRequest(variant=variant, checkpoint=weights.get("checkpoint"),
                            adapter=weights.get("adapter"), random_weights=random,
                            seed=weights.get("seed", 0), precisions=precisions, overwrite=True,
                            verify=False)
    say(f"exporting {variant} ({', '.join(precisions)}) to {folder} ...")
    manifest = export_folder(request, folder, progress=lambda m: say(f"  {m}"))
    return folder, manifest


def ensure_int8(folder: Path, say) -> dict:
    """The record of ``folder``'s INT8 encoder, quantized now (``s3pot quantize``, on the shipped
    calibration faces) when the folder has none or only a stale one."""
    from s3pot.core.errors import ExportError
    from s3pot.core.manifest import read_manifest
    from s3pot.core.quantized import check_int8, int8_present

    manifest = read_manifest(folder)
    if int8_present(folder):
        try:
            record = check_int8(folder, manifest)
            say(f"reusing the INT8 encoder in {folder} (relative L2 "
                f"{record['check']['rel_l2']:.2e} against FP32)")
            return record
        except ExportError as exc:
            say(f"the INT8 encoder in {folder} is stale ({exc}); quantizing again")
    from s3pot.export.openvino_int8 import quantize_encoder

    return quantize_encoder(folder, say=lambda message: say(f"  {message}"))


def _check_weights(recorded: dict, weights: dict, folder: Path) -> None:
    if recorded["kind"] != weights["kind"] or (
            weights["kind"] == "random" and recorded.get("seed") != weights["seed"]):
        raise S3potInputError(
            f"export '{folder}': its graphs carry {_describe_weights(recorded)}, the PyTorch "
            f"paths would load {_describe_weights(weights)}; pass the same weights")
    if weights["kind"] == "checkpoint":
        from s3pot.core.manifest import sha256_file

        if recorded["checkpoint"]["sha256"] != sha256_file(weights["checkpoint"]):
            raise S3potInputError(f"--checkpoint '{weights['checkpoint']}': expected the checkpoint "
                                  f"export '{folder}' was made from "
                                  f"({recorded['checkpoint']['name']}), got another file")


def _describe_weights(weights: dict) -> str:
    """Weights as this run asks for them (paths) or as a manifest records them (names, hashes)."""
    if weights["kind"] == "random":
        return f"random weights (seed {weights.get('seed')})"

    def name(file) -> str:
        return file["name"] if isinstance(file, dict) else Path(file).name

    label = f"checkpoint {name(weights['checkpoint'])}"
    return label + (f" + adapter {name(weights['adapter'])}" if weights.get("adapter") else "")


# -- running the paths ---------------------------------------------------------------------------
class PathProcess:
    """One path in a fresh process (:mod:`.child`), driven one sample at a time; its peak host
    memory is that process's own."""

    def __init__(self, config: dict, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.work, self.timings, self.started, self.page_faults, self.failure = work, [], [], [], None
        (work / "config.json").write_text(json.dumps({**config, "out": str(work)}))
        self._stderr = open(work / "stderr.txt", "w+")
        env = {**os.environ, **MALLOC[config["malloc"]]["env"]}
        self.proc = subprocess.Popen([sys.executable, "-m", "s3pot.benchmarks.child",
                                      str(work / "config.json")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)

    def ready(self) -> float | None:
        """Waits for the build and the warm-up samples; the build's seconds (None when the
        process has failed)."""
        reply = self._ask(None, "ready")
        return None if reply is None else reply["build_s"]

    def run(self) -> float | None:
        """One timed sample; its end-to-end seconds (None when the process has failed)."""
        reply = self._ask("run", "ran")
        if reply is None:
            return None
        self.timings.append(reply["timings"])
        self.started.append(reply["started"])
        self.page_faults.append(reply["page_faults"])
        return reply["timings"]["total"]

    def finish(self) -> dict:
        """The video case, the accuracy arrays and the floor's rate; the path's result."""
        if self._ask("finish", "done") is None:
            return self.failure
        self.proc.wait()
        result = json.loads((self.work / "result.json").read_text())
        return {**result, "runs": self.timings, "started": self.started,
                "page_faults": self.page_faults, "status": "ok"}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            stream.close()

    def _ask(self, command: str | None, expected: str) -> dict | None:
        if self.failure is not None:
            return None
        try:
            if command is not None:
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            reply = json.loads(line) if line.strip() else None
        except (OSError, ValueError):  # the process has gone, or said something else
            reply = None
        if reply is None or reply.get("status") != expected:
            self._fail()
            return None
        return reply

    def _fail(self) -> None:
        self.close()
        text = (self.work / "stderr.txt").read_text(errors="replace")
        lines = [line for line in text.strip().splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if "Error" in line or "error" in line),
                     lines[-1] if lines else f"exit status {self.proc.returncode}")
        self.failure = {"status": "failed", "error": error[-500:], "log_tail": "\n".join(lines[-20:])}


def drive_paths(paths: list[BenchPath], config: dict, scratch: Path, interleave: bool,
                say) -> list[dict]:
    """Every path's result, the baseline's first.

    Sequential (the default): one path's process after another, each alone on the machine.
    Interleaved (``--interleave``): every path's process is built and warmed up, then each round
    runs one timed sample of every path in turn, so that a drift of the machine's speed over
    minutes falls on every path alike. All the processes then stay in memory together, which is
    not neutral everywhere: on the 2-core, 24 GB machine of the README the official ViT-B
    encoder of the baseline took 18.0 to 18.4 s per image with the four other CPU paths' processes
    idle in memory (about 10 GB, no CPU) against 12.1 to 15.6 s alone, while those paths'
    own times barely moved; so on such a machine interleaving flatters every ratio."""
    runs, total = config["runs"], len(paths)
    processes: list[PathProcess] = []

    def start(index: int, path: BenchPath) -> PathProcess:
        say(f"[{index}/{total}] {path.name} on {path.device}: build and {config['warmup']} "
            f"warm-up ...")
        child = {**config, "path": asdict(path), "baseline_arrays":
                 str(scratch / entry_dir(1) / "arrays.npz") if index > 1 else None}
        process = PathProcess(child, scratch / entry_dir(index))
        processes.append(process)
        build = process.ready()
        say(f"    built in {build:.1f} s, warmed up" if build is not None else "    failed")
        _check_baseline(index, process)
        return process

    def finish(index: int, process: PathProcess) -> dict:
        result = process.finish()
        _check_baseline(index, process)
        name = paths[index - 1].name
        if result["status"] != "ok":
            say(f"    {name} failed: {result['error']}")
        else:
            median = float(np.median([run["total"] for run in result["runs"]]))
            say(f"    {name}: {median:.3f} s per sample (median), peak host memory "
                f"{result['peak_host_bytes'] / 1e9:.2f} GB")
        return result

    try:
        if not interleave:
            results = []
            for index, path in enumerate(paths, 1):
                process = start(index, path)
                for _ in range(runs):
                    process.run()
                results.append(finish(index, process))
            return results
        live = [start(index, path) for index, path in enumerate(paths, 1)]
        for round_ in range(1, runs + 1):
            totals = [(path.name, process.run()) for path, process in zip(paths, live)]
            say(f"round {round_}/{runs}: " + ", ".join(
                f"{name} {'failed' if seconds is None else f'{seconds:.2f} s'}"
                for name, seconds in totals))
        say("video case, accuracy and the floor's GEMM rate of each path ...")
        # the baseline first: its recorded stage inputs feed the others' accuracy columns
        return [finish(index, process) for index, process in enumerate(live, 1)]
    finally:
        for process in processes:
            process.close()


def _check_baseline(index: int, process: PathProcess) -> None:
    if index == 1 and process.failure is not None:
        raise S3potInputError(f"the baseline failed: {process.failure['error']}\n"
                              f"{process.failure['log_tail']}")


def summary(values: list[float]) -> dict:
    """median, p90, p99, mean, min of ``values`` (seconds) and their count."""
    array = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(array)), "p90": float(np.percentile(array, 90)),
            "p99": float(np.percentile(array, 99)), "mean": float(array.mean()),
            "min": float(array.min()), "n": int(array.size)}


def stage_summaries(runs: list[dict]) -> tuple[dict, dict]:
    stages = {key: summary([run.get(key, 0.0) for run in runs]) for key in STAGE_KEYS}
    return stages, summary([run["total"] for run in runs])


def accuracy(path_name: str, arrays, reference) -> dict:
    """A path's outputs against the baseline's: prompts (per face token), mask IoU, and the
    relative L2 error of each stage's output on the same inputs."""
    from s3pot.export.onnx_export import rel_l2

    from s3pot.runtime.metrics import score

    face = np.union1d(reference["occlusion_tokens"], reference["face_tokens"])
    ref_occ, got_occ = set(reference["occlusion_tokens"].tolist()), set(arrays["occlusion_tokens"].tolist())
    agree = sum((t in ref_occ) == (t in got_occ) for t in face.tolist())
    same = (np.array_equal(arrays["occlusion_tokens"], reference["occlusion_tokens"])
            and np.array_equal(arrays["face_tokens"], reference["face_tokens"]))
    errors = {}
    for stage in STAGES:
        key = f"output:{stage}"
        if key in arrays.files and key in reference.files:
            got, want = arrays[key], reference[key]
            errors[stage] = rel_l2(got, want) if got.shape == want.shape else None
    return {"reference": BASELINE, "prompts_equal": bool(same),
            "initial_token_equal": bool(int(arrays["initial_token"]) == int(reference["initial_token"])),
            "prompt_agreement": agree / max(1, face.size), "face_tokens": int(face.size),
            "occlusion_prompts": int(arrays["occlusion_tokens"].size),
            "mask_iou": score(path_name, arrays["occlusion"], reference["occlusion"]).iou,
            "logits_rel_error": rel_l2(arrays["mask_logits"], reference["mask_logits"]),
            "stage_rel_error": errors}


@dataclass
class BenchOptions:
    variant: str = "vit_b"
    checkpoint: Path | None = None
    adapter: Path | None = None
    seed: int = 0
    model: Path | None = None
    backends: tuple = ()
    precisions: tuple = ()
    runs: int = 2
    warmup: int = 1
    video_runs: int | None = None
    threads: int = 0
    out: Path = Path("out/bench")
    floor: bool = True
    device: str = "auto"
    interleave: bool = False
    malloc: str = "system"


def check_malloc(mode: str) -> None:
    """``keep`` is glibc's settings: refuse it, in one line, under another C library."""
    if mode not in MALLOC:
        raise S3potInputError(f"--malloc {mode!r}: expected one of {', '.join(MALLOC)}")
    libc = platform.libc_ver()[0]
    if mode == "keep" and libc != "glibc":
        raise S3potInputError(f"--malloc keep: expected glibc (its MALLOC_ settings), got "
                              f"{libc or 'another C library'}")


def run_bench(options: BenchOptions, say=lambda message: None) -> dict:
    """Measure every path; returns the report (see :mod:`.report` for what is written)."""
    from s3pot.core.gpu import nvidia_gpu_present
    from s3pot.core.spec import resolve_context, resolve_face_set
    from s3pot.models import get_variant

    get_variant(options.variant)  # an unknown name lists the known ones
    check_malloc(options.malloc)
    if options.runs < 1 or options.warmup < 0:
        raise S3potInputError(f"--runs/--warmup: expected runs >= 1 and warmup >= 0, got "
                              f"{options.runs} and {options.warmup}")
    gpu = options.device != "cpu" and nvidia_gpu_present()
    weights = weights_record(options.variant, options.checkpoint, options.adapter, options.seed)
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    known = options.model or options.out / f"export-{options.variant}"  # engines built there
    paths = select_paths(available_paths(gpu, known), options.backends, options.precisions)
    if any(p.backend in GRAPH_BACKENDS for p in paths) or weights.get("adapter"):
        folder, manifest = ensure_export(options.variant, weights, options.out, options.model,
                                         gpu, say)
        context = manifest["normalization"], manifest["face_set"]
    else:  # PyTorch paths alone (a GPU machine without TensorRT or onnxruntime-gpu): no export
        folder = None
        context = resolve_context(None, None, None, get_variant(options.variant).normalization)
    quantized = (ensure_int8(folder, say)
                 if any(p.backend == "openvino" and p.precision == "int8" for p in paths) else None)
    sample = [str(DATA / name) for name in SAMPLE]
    config = {"variant": options.variant, "weights": weights, "model": str(folder),
              "normalization": context[0], "face_set": list(resolve_face_set(context[1])),
              "sample": sample, "runs": options.runs, "warmup": options.warmup,
              "video_runs": options.runs if options.video_runs is None else options.video_runs,
              "threads": options.threads, "floor": options.floor, "malloc": options.malloc,
              "settle_s": SETTLE_S if options.interleave else 0.0}
    report = {"schema": SCHEMA, "benchmark": "s3pot bench",
              "created": time.strftime("%Y-%m-%d %H:%M:%S"), "environment": environment(),
              "variant": options.variant, "weights": {**weights, "label": _weights_label(weights)},
              "sample": SAMPLE[0], "image_size": IMAGE_SIZE, "runs": options.runs,
              "warmup": options.warmup, "video_runs": config["video_runs"],
              "clock": ("perf_counter around each stage; every stage returns host arrays, so a GPU "
                        "stage's time includes its synchronisation"),
              "order": (f"interleaved: one timed sample of every path per round, each process "
                        f"idle {SETTLE_S:g} s after its sample" if options.interleave
                        else "sequential: one path after another"),
              "malloc": {"mode": options.malloc, **MALLOC[options.malloc]}, "paths": []}
    if quantized is not None:
        report["int8_encoder"] = quantized
    with tempfile.TemporaryDirectory(prefix="s3pot-bench-") as scratch:
        scratch = Path(scratch)
        results = drive_paths(paths, config, scratch, options.interleave, say)
        for index, (path, result) in enumerate(zip(paths, results), 1):
            entry = {"name": path.name, **asdict(path), "reduced": path.reduced, **result}
            report["paths"].append(entry)
            if result["status"] != "ok":
                continue
            entry["stages"], entry["total"] = stage_summaries(entry["runs"])
            faults = entry["page_faults"]
            entry["page_faults_median"] = (None if None in faults or not faults
                                           else float(np.median(faults)))
            if entry["video_runs"]:
                entry["video_stages"], entry["video_total"] = stage_summaries(entry["video_runs"])
            arrays = np.load(scratch / entry_dir(index) / "arrays.npz", allow_pickle=False)
            if index == 1:
                reference = arrays
            entry["accuracy"] = accuracy(path.name, arrays, reference)
    if options.floor:
        say("the floor: FLOPs per stage ...")
        report["floor"] = measure_floor(report)
    finish(report)
    report["seconds"] = time.perf_counter() - started
    return report


def entry_dir(index: int) -> str:
    return BASELINE if index == 1 else f"path{index}"


def _weights_label(weights: dict) -> str:
    random = weights["kind"] == "random"
    return _describe_weights(weights) + ("; latency does not depend on their values" if random else "")


def measure_floor(report: dict) -> dict:
    """FLOPs per stage (this run's prompt count) and the GEMM rate each path's process measured
    of its library right after its runs (so a busier or quieter moment of the machine moves the
    path and its floor together)."""
    from .floor import GEMM_SHAPE, stage_flops

    baseline = report["paths"][0]
    points = baseline["accuracy"]["face_tokens"]  # every face token is one prompt
    flops, attention = stage_flops(report["variant"], points)
    rates = {entry["name"]: entry["gemm"] for entry in report["paths"] if "gemm" in entry}
    return {"flops": flops, "encoder_attention_flops": attention,
            "gemm": {"m": GEMM_SHAPE[0], "k": GEMM_SHAPE[1], "n": GEMM_SHAPE[2]},
            "rates": rates, "prompts": points}


#: Images through the encoder per sample: the image and its reference.
IMAGES_PER_SAMPLE = 2


def finish(report: dict) -> None:
    """Ratios against the baseline, distance to the floor, the checks and the headline."""
    from s3pot.export.onnx_export import FP32_TOLERANCE

    paths = [p for p in report["paths"] if p["status"] == "ok"]
    baseline = paths[0]
    base_total = baseline["total"]["median"]
    floor = report.get("floor")
    for entry in paths:
        entry["speedup"] = base_total / entry["total"]["median"]
        if "video_total" in entry:
            entry["video_speedup"] = base_total / entry["video_total"]["median"]
        entry["throughput_per_s"] = 1.0 / entry["total"]["median"]
        entry["encoder_per_image_s"] = entry["stages"]["encoder"]["median"] / IMAGES_PER_SAMPLE
        if floor and entry["name"] in floor["rates"]:
            measured = floor["rates"][entry["name"]]
            rate = measured["gflops"] * 1e9
            entry["floor"] = {stage: {"seconds": flops / rate} for stage, flops in floor["flops"].items()}
            if "float_gflops" in measured:  # INT8 encoder: its attention in floating point
                attention = floor.get("encoder_attention_flops", 0.0)
                entry["floor"]["encoder"]["seconds"] = (
                    (floor["flops"]["encoder"] - attention) / rate
                    + attention / (measured["float_gflops"] * 1e9))
            entry["floor"]["encoder"]["per_image_s"] = entry["encoder_per_image_s"]
            entry["floor"]["encoder"]["ratio"] = entry["encoder_per_image_s"] / entry["floor"]["encoder"]["seconds"]
    fp32 = [p for p in paths[1:] if not p["reduced"]]
    reduced = [p for p in paths[1:] if p["reduced"]]
    checks = {"fp32_prompts_equal_baseline": {p["name"]: p["accuracy"]["prompts_equal"] for p in fp32},
              # the exporter's tolerance: every FP32 stage within it of PyTorch's on the same inputs
              "fp32_stage_error_within": FP32_TOLERANCE,
              "fp32_stage_error_ok": {p["name"]: all(e is not None and e <= FP32_TOLERANCE for e in
                                                     p["accuracy"]["stage_rel_error"].values())
                                      for p in fp32}}
    head = {}
    if fp32:
        best = min(fp32, key=lambda p: p["total"]["median"])
        head["fastest_fp32"] = {"name": best["name"], "speedup": best["speedup"]}
        if "floor" in best:
            head["fastest_fp32"]["encoder_floor_ratio"] = best["floor"]["encoder"]["ratio"]
    if reduced:
        best = min(reduced, key=lambda p: p["total"]["median"])
        head["fastest_reduced"] = {"name": best["name"], "speedup": best["speedup"],
                                   "mask_iou": best["accuracy"]["mask_iou"],
                                   "prompt_agreement": best["accuracy"]["prompt_agreement"]}
    fastest = min(paths, key=lambda p: p["total"]["median"])
    shares = {k: v["median"] / fastest["total"]["median"] for k, v in fastest["stages"].items()}
    head["dominant"] = {"path": fastest["name"], "stage": max(shares, key=shares.get),
                        "share": max(shares.values())}
    report["checks"] = checks
    report["headline"] = head
