"""Runs the four graphs of an export folder in ONNX Runtime (``onnxruntime`` or ``onnxruntime-gpu``).

On the CPU: intra-op threads as asked (default: ONNX Runtime's, one per core), full graph
optimisation saved once and reloaded by later processes (:mod:`.loader`), memory pattern off
(it keeps every run's peak reserved: 7.2 GB instead of 4.1 GB on the ViT-B encoder, and a 21 s
first call, for no speed afterwards), and the encoder fed one image at a time
(``base.CPU_ENCODER_BATCH``). On an NVIDIA GPU: the CUDA execution provider with IO
binding, so outputs are written to device memory and copied back once. ``onnxruntime-gpu`` logs
its missing CUDA libraries at error level on a machine without them; sessions are created at
warning level 3 (errors that stop the session still raise), and the provider actually used is
what the runner reports.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path


from s3pot.core.errors import NoGpuError, S3potInputError
from s3pot.core.io_table import ENCODER, PIXELS

from ..base import CPU_ENCODER_BATCH, Runner, RunnerInfo, encode_in_parts
from .loader import OPTIMIZED_NAME, ExportFolder, cache_key, optimized_dir

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: ONNX Runtime's log severity for sessions: 3 = errors only (0 verbose ... 4 fatal).
QUIET = 3


def session_options(threads: int = 0):
    """The options every s3pot session starts from (also used by the exporter's checks)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    options.intra_op_num_threads = threads
    options.log_severity_level = QUIET
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def resolve_providers(device: str) -> list:
    """Execution providers for ``device``: ``cpu``; ``cuda`` / ``cuda:N`` (the CUDA provider,
    refused when this ONNX Runtime has none); ``auto`` (CUDA where it is available and a GPU is
    present, else CPU)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if device == "auto":
        from s3pot.core.gpu import nvidia_gpu_present

        return [CUDA, CPU] if CUDA in available and nvidia_gpu_present() else [CPU]
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise S3potInputError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
        if CUDA not in available:
            raise NoGpuError(f"device {device!r}: this ONNX Runtime has no CUDA execution provider "
                             f"(it has {', '.join(available)}); pip install onnxruntime-gpu")
        return [(CUDA, {"device_id": int(index)}), CPU]
    raise S3potInputError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")


#: ONNX Runtime's exceptions for a graph file that cannot be parsed (a damaged cache entry).
DAMAGED_GRAPH_ERRORS = ("InvalidProtobuf", "InvalidGraph", "NoSuchFile", "Fail")


def _provider_name(provider) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


def create_session(export: ExportFolder, stage: str, providers: list, threads: int = 0,
                   cache: bool = True, cache_dir=None):
    """A session for one stage's graph; with ``cache``, its optimised graph is saved once and
    reloaded (with optimisation off) by every later session with the same key."""
    import onnxruntime as ort

    path = str(export.graphs[stage])
    options = session_options(threads)
    if not cache:
        return ort.InferenceSession(path, options, providers=providers)
    key = cache_key(export.digests[stage], ort.__version__, [_provider_name(p) for p in providers],
                    "all")
    folder = optimized_dir(export, stage, key, cache_dir)
    if folder is None:
        return ort.InferenceSession(path, options, providers=providers)
    cached = folder / OPTIMIZED_NAME
    if cached.is_file():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(cached), options, providers=providers)
            log.debug("%s: optimised graph loaded from %s", stage, cached)
            return session
        except Exception as exc:
            if type(exc).__name__ not in DAMAGED_GRAPH_ERRORS:
                raise  # out of memory, a provider failing: the entry is fine, the run is not
            # a damaged entry is rebuilt, never trusted
            log.warning("optimised graph '%s' could not be loaded (%s); optimising again", cached, exc)
            shutil.rmtree(folder, ignore_errors=True)
            options = session_options(threads)
    # Written into a private folder, then renamed into place: a process or thread that loses the
    # race (or crashes) leaves no half-written cache entry.
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f"{folder.name}.tmp-"))
    options.optimized_model_filepath = str(scratch / OPTIMIZED_NAME)
    if export.has_external_data(stage):
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         OPTIMIZED_NAME + ".data")
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    try:
        session = ort.InferenceSession(path, options, providers=providers)
        if session.get_providers()[0] == _provider_name(providers[0]):
            os.rename(scratch, folder)  # (not when CUDA was asked for and the CPU answered)
            log.debug("%s: optimised graph saved to %s", stage, folder)
    except OSError:
        pass  # another process saved it first
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return session


class OnnxRuntimeRunner(Runner):
    """The four graphs of a checked export folder in ONNX Runtime sessions.

    Args:
        export: the checked export folder (:func:`.loader.load_export`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        threads: intra-op threads per session (0: one per core).
        cache: save and reuse optimised graphs (see :mod:`.loader`).
    """

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently

    def __init__(self, export: ExportFolder, *, device: str = "auto", threads: int = 0,
                 cache: bool = True, cache_dir=None, cpu_encoder_batch: int = CPU_ENCODER_BATCH) -> None:
        super().__init__(export.context)
        self.export = export
        self.device, self.threads, self.cache, self.cache_dir = device, threads, cache, cache_dir
        self.cpu_encoder_batch = cpu_encoder_batch
        self.sessions: dict = {}
        self._cuda = False

    def _activate(self) -> None:
        import onnxruntime as ort

        ort.set_default_logger_severity(QUIET)
        providers = resolve_providers(self.device)
        self.sessions = {stage: create_session(self.export, stage, providers, self.threads,
                                               self.cache, self.cache_dir)
                         for stage in self.export.graphs}
        used = next(iter(self.sessions.values())).get_providers()
        self._cuda = used[0] == CUDA
        self._device_id = next((p[1]["device_id"] for p in providers if isinstance(p, tuple)), 0)
        if self.device.startswith("cuda") and not self._cuda:
            raise NoGpuError(f"device {self.device!r}: ONNX Runtime could not start its CUDA "
                             "execution provider here (no GPU, or CUDA / cuDNN libraries missing); "
                             "use --device cpu")
        device = "cpu"
        if self._cuda:
            from s3pot.core.gpu import query_gpu

            try:
                device = query_gpu().name
            except NoGpuError:
                device = "cuda"
        self._info = RunnerInfo(backend=self.name, version=ort.__version__, device=device,
                                provider=used[0], precision=self.export.precision,
                                source=str(self.export.folder))

    def _deactivate(self) -> None:
        self.sessions = {}

    def _infer(self, stage: str, feeds: dict) -> dict:
        pixels = feeds.get(PIXELS)
        if stage == ENCODER.name and not self._cuda and len(pixels) > self.cpu_encoder_batch:
            return encode_in_parts(lambda part: self._run(stage, part), pixels, self.cpu_encoder_batch)
        return self._run(stage, feeds)

    def _run(self, stage: str, feeds: dict) -> dict:
        session = self.sessions[stage]
        names = [o.name for o in session.get_outputs()]
        if not self._cuda:
            return dict(zip(names, session.run(names, feeds)))
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for name in names:
            binding.bind_output(name, "cuda", self._device_id)
        session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu()))

