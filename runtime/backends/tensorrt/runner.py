"""Runs the four stages as TensorRT engines on an NVIDIA GPU (TensorRT 10.x and 11.x Python API).

GPU memory, pinned host memory and the CUDA stream come from Numba's CUDA driver (a base
dependency; neither pycuda nor cuda-python is needed to run). What happens, per stage:

``activate`` (once)
    ``trt.Runtime(logger).deserialize_cuda_engine(plan)`` (after :mod:`.loader` has checked the
    sidecar against this machine), one ``create_execution_context()``; for every IO tensor one
    flat device buffer and one flat pinned host buffer holding its largest shape (inputs: the
    engine's profile maximum, which must equal the IO table's; outputs: the IO table's maximum),
    bound once with ``context.set_tensor_address(name, pointer)``. TensorRT needs every address
    bound before ``execute_async_v3`` and unchanged until the stream is synchronised; so the
    buffers never move and are never reallocated.
``infer`` (every call)
    feeds (checked against the IO table by :class:`~..base.Runner`) copied into the pinned
    buffers, then host -> device on the runner's stream; ``context.set_input_shape`` only when a
    shape changed; output shapes from ``context.get_tensor_shape``; ``execute_async_v3(stream)``
    (or the stage's CUDA graph); device -> pinned on the stream; synchronise; copies returned.

A tensor of shape ``S`` occupies the first ``prod(S)`` elements of its flat buffers, C order::

    encoder   pixels B x 3 x 1024 x 1024          -> image_embeddings B x 256 x 64 x 64
    fe        image_embeddings B x 256 x 64 x 64,
              initial_point B x 1 x 2             -> enhanced_tokens B x 4096 x 256
    sa        point_coords 1 x N x 2,
              point_labels 1 x N                  -> sparse_prompts 1 x (N + 1) x 256
    decoder   image_embeddings 1 x 256 x 64 x 64,
              sparse_prompts 1 x (N + 1) x 256    -> low_res_logits 1 x 1 x 256 x 256

(the batch and point ranges are the IO table's, :mod:`s3pot.core.io_table`).

CUDA graphs (:mod:`.graphs`, when cuda-python is installed) serve the stages whose shapes stay put
from call to call, the encoder and FE: after a stage's first run at a shape, one more
``execute_async_v3`` is captured and later calls at that shape replay it. A graph freezes shapes,
addresses and the context's state, so a call at another shape (another batch size) drops the
graph, runs uncaptured and captures again. SA and the decoder change shape with every image (``N``
prompts) and always run uncaptured.

:meth:`TensorRTRunner.select` keeps FE's tokens on the GPU and hands the two halves of its device
buffer (``4096 x 256`` each, no host copy) to the CUDA prompt-selection kernel.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s3pot.core.errors import ExportError, MissingDependencyError, NoGpuError, S3potError
from s3pot.core.gpu import GpuInfo, query_gpu
from s3pot.core.io_table import (ENCODER, ENHANCED_TOKENS, FE, Dim, StageIO, TensorSpec, get_stage)
from s3pot.core.tensorrt import import_tensorrt, tensorrt_major

from ..base import SELECTION_TIMING, Runner, RunnerInfo, timed
from .graphs import NO_CUDA_PYTHON, CudaGraphs, GraphError, load_cudart
from .loader import EngineFolder, check_engines

log = logging.getLogger(__name__)

#: Stages whose input shapes stay the same from call to call: worth a CUDA graph.
GRAPH_STAGES = (ENCODER.name, FE.name)
#: The one optimisation profile every engine has (``s3pot build`` adds exactly one).
PROFILE = 0
#: TensorRT log messages kept for error messages (the reasons behind a None or a False).
KEPT_MESSAGES = 8


# -- TensorRT's log into Python's ----------------------------------------------------------------
def make_logger(trt):
    """A ``trt.ILogger`` forwarding TensorRT's messages to :mod:`logging` (errors as errors,
    warnings as warnings, INFO as debug, VERBOSE dropped) and keeping the last errors and
    warnings (``.recent``) for the exceptions that follow a failed call."""
    severity = trt.ILogger.Severity

    class PythonLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.recent: collections.deque[str] = collections.deque(maxlen=KEPT_MESSAGES)

        def log(self, level, msg):
            level = int(level)
            if level <= int(severity.ERROR):
                self.recent.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif level == int(severity.WARNING):
                self.recent.append(str(msg))
                log.warning("TensorRT: %s", msg)
            elif level == int(severity.INFO):
                log.debug("TensorRT: %s", msg)

        def reasons(self) -> str:
            return " | ".join(self.recent) or "TensorRT logged no reason"

    return PythonLogger()


# -- Numba: memory and stream --------------------------------------------------------------------
def numba_cuda():
    """``numba.cuda``, once a GPU (or Numba's CUDA simulator) is known to be usable."""
    try:
        from numba import cuda
    except ImportError:
        raise MissingDependencyError("the tensorrt backend allocates GPU memory with Numba: "
                                     "pip install 'numba>=0.59'") from None
    if not cuda.is_available():
        raise NoGpuError("the tensorrt backend needs an NVIDIA GPU with a working driver, and "
                         "numba.cuda found none (numba.cuda.is_available() is False); use "
                         "--backend onnxruntime on this machine")
    return cuda


def device_pointer(array) -> int:
    """The address of a device array, as ``set_tensor_address`` takes it.

    Numba's device arrays give it in ``__cuda_array_interface__``. Under Numba's CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``) a "device" array wraps a host NumPy array and has no such
    interface: its address is the host array's (what a test double of TensorRT reads and writes).
    """
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        return int(interface["data"][0])
    if getattr(array, "__cuda_ndarray__", False):
        return int(array.__array_interface__["data"][0])
    raise TypeError(f"expected a Numba device array, got {type(array).__name__}")


def stream_handle(stream) -> int:
    """The ``cudaStream_t`` of a Numba stream as an int (``execute_async_v3``, cuda-python).

    The simulator's stream runs everything synchronously and has no handle: 0."""
    try:
        return int(stream)
    except TypeError:
        return 0


def view(buffer, shape):
    """The first ``prod(shape)`` elements of flat ``buffer`` as a C-order array of ``shape``."""
    return buffer[:_count(shape)].reshape(tuple(shape))


def _count(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def fits(spec: TensorSpec, shape) -> bool:
    """Whether ``shape`` is one the IO table allows for ``spec`` (dynamic axes within range)."""
    return len(shape) == len(spec.shape) and all(
        d.contains(n) if isinstance(d, Dim) else n == d for d, n in zip(spec.shape, shape))


# -- checks of a deserialised engine against the IO table ------------------------------------------
def check_engine_io(trt, engine, io: StageIO, path: Path, hint: str) -> None:
    """The engine's IO tensors are the stage's in the IO table: names, modes, dtypes, ranks and
    fixed axes, and its profile 0 is the table's (min, opt, max) for every input."""
    modes = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        modes[name] = engine.get_tensor_mode(name)
    inputs = sorted(n for n, m in modes.items() if m == trt.TensorIOMode.INPUT)
    outputs = sorted(n for n, m in modes.items() if m == trt.TensorIOMode.OUTPUT)
    if inputs != sorted(io.input_names) or outputs != sorted(io.output_names):
        raise ExportError(f"engine '{path}': expected inputs {sorted(io.input_names)} and outputs "
                          f"{sorted(io.output_names)} (stage {io.name!r} of the IO table), got "
                          f"inputs {inputs} and outputs {outputs}: {hint}")
    for spec in (*io.inputs, *io.outputs):
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(spec.name)))
        if dtype != np.dtype(spec.dtype):
            raise ExportError(f"engine '{path}': tensor {spec.name!r}: expected dtype {spec.dtype}, "
                              f"got {dtype}: {hint}")
        shape = tuple(int(d) for d in engine.get_tensor_shape(spec.name))
        declared = tuple(-1 if isinstance(d, Dim) else d for d in spec.shape)
        # An output axis TensorRT cannot prove constant reads -1; it is checked at run time.
        ok = len(shape) == len(declared) and all(
            got == want or (got == -1 and spec in io.outputs) for got, want in zip(shape, declared))
        if not ok:
            raise ExportError(f"engine '{path}': tensor {spec.name!r}: expected shape {declared} "
                              f"(-1: dynamic), got {shape}: {hint}")
    if engine.num_optimization_profiles < 1:
        raise ExportError(f"engine '{path}': expected one optimisation profile, got none: {hint}")
    for name, expected in io.profile().items():
        got = tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, PROFILE))
        if got != expected:
            raise ExportError(f"engine '{path}': input {name!r}: expected the profile (min, opt, "
                              f"max) {expected} of the IO table, got {got}: {hint}")


@dataclass
class _Stage:
    """One stage on the GPU: its engine, execution context and buffers (flat, max-sized)."""

    io: StageIO
    path: Path
    engine: object
    context: object
    device: dict = field(default_factory=dict)  # tensor name -> flat device array
    host: dict = field(default_factory=dict)  # tensor name -> flat pinned host array
    shapes: dict | None = None  # input name -> shape set on the context
    output_shapes: dict = field(default_factory=dict)  # output name -> shape at ``shapes``
    graph: object | None = None  # instantiated CUDA graph at ``shapes``
    graphs_failed: bool = False  # a capture failed: run this stage uncaptured from now on


class TensorRTRunner(Runner):
    """The four stages as TensorRT engines on the GPU, with Numba device and pinned memory.

    Args:
        engines: the checked-for engines of an export folder (:func:`.loader.find_engines`).
        gpu: the GPU to check the engines' sidecars against; default: :func:`query_gpu`.

    One CUDA stream and one set of buffers: not thread safe (the pipeline serialises calls).
    """

    name = "tensorrt"
    thread_safe = False

    def __init__(self, engines: EngineFolder, *, gpu: GpuInfo | None = None) -> None:
        super().__init__(engines.context())
        self.engines = engines
        self._gpu = gpu
        self._reset()

    def _reset(self) -> None:
        self._stages: dict[str, _Stage] = {}
        self._runtime = None
        self._logger = None
        self._cuda = None
        self._stream = None
        self._stream_handle = 0
        self._graphs: CudaGraphs | None = None

    @property
    def _hint(self) -> str:
        return f"rebuild it with `{self.engines.build_command}`"

    # -- lifecycle ---------------------------------------------------------------------------
    def _activate(self) -> None:
        trt = import_tensorrt()
        tensorrt_major(trt)
        gpu = self._gpu or query_gpu()
        check_engines(self.engines, tensorrt_version=trt.__version__, gpu=gpu)  # before any plan
        cuda = numba_cuda()
        try:
            self._load(trt, cuda, gpu)
        except BaseException:
            self._release()
            raise

    def _load(self, trt, cuda, gpu: GpuInfo) -> None:
        self._cuda = cuda
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._stream = cuda.stream()  # TensorRT wants a stream other than the legacy default
        self._stream_handle = stream_handle(self._stream)
        for name, path in self.engines.engines.items():
            self._stages[name] = self._load_stage(trt, get_stage(name), path)
        cudart = load_cudart()
        self._graphs = CudaGraphs(cudart, self._stream_handle) if cudart is not None else None
        graphs = (f"CUDA graphs on ({', '.join(GRAPH_STAGES)})" if self._graphs is not None
                  else f"CUDA graphs off ({NO_CUDA_PYTHON})")
        self._info = RunnerInfo(backend=self.name, version=trt.__version__, device=gpu.name,
                                provider=f"TensorRT engines, {graphs}",
                                precision=self.engines.precision,
                                source=str(self.engines.engine_dir))

    def _load_stage(self, trt, io: StageIO, path: Path) -> _Stage:
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ExportError(f"engine '{path}': TensorRT {trt.__version__} could not deserialise "
                              f"it ({self._logger.reasons()}): {self._hint}")
        check_engine_io(trt, engine, io, path, self._hint)
        context = engine.create_execution_context()
        if context is None:
            raise S3potError(f"engine '{path}': TensorRT could not create an execution context "
                             f"({self._logger.reasons()}); is the GPU out of memory?")
        stage = _Stage(io=io, path=path, engine=engine, context=context)
        for spec in (*io.inputs, *io.outputs):
            count = _count(spec.shape_at("max"))  # inputs: = the engine's profile max (checked)
            stage.device[spec.name] = self._cuda.device_array(count, dtype=np.dtype(spec.dtype))
            stage.host[spec.name] = self._cuda.pinned_array(count, dtype=np.dtype(spec.dtype))
            if not context.set_tensor_address(spec.name, device_pointer(stage.device[spec.name])):
                raise S3potError(f"engine '{path}': TensorRT refused the address of tensor "
                                 f"{spec.name!r} ({self._logger.reasons()})")
        log.debug("%s: %s loaded, buffers for %s", io.name, path,
                  ", ".join(f"{s.name} {s.shape_at('max')}" for s in (*io.inputs, *io.outputs)))
        return stage

    def _deactivate(self) -> None:
        self._release()

    def _release(self) -> None:
        """Free in dependency order: graphs (they hold the contexts' launches), contexts (they
        hold the buffers' addresses), engines, the runtime, then buffers and the stream."""
        if self._stream is not None:
            self._stream.synchronize()  # nothing may still read or write a buffer
        for stage in self._stages.values():
            self._drop_graph(stage)
        for stage in self._stages.values():
            stage.context = None
        for stage in self._stages.values():
            stage.engine = None
        self._runtime = None
        for stage in self._stages.values():
            stage.device.clear()
            stage.host.clear()
        self._reset()

    # -- running -----------------------------------------------------------------------------
    def _infer(self, stage: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = self._stages[stage]
        outputs = self._run(state, feeds)
        host = {}
        for name, device in outputs.items():
            host[name] = view(state.host[name], device.shape)
            device.copy_to_host(host[name], stream=self._stream)
        self._stream.synchronize()
        self._capture_if_due(state)
        return {name: array.copy() for name, array in host.items()}

    def _run(self, state: _Stage, feeds: dict[str, np.ndarray]) -> dict:
        """Feeds to the device, the engine (or its graph) enqueued; returns output name -> device
        view at its shape. The outputs are ready once the stream is synchronised."""
        for name, array in feeds.items():
            pinned = view(state.host[name], array.shape)
            pinned[...] = array
            view(state.device[name], array.shape).copy_to_device(pinned, stream=self._stream)
        self._set_shapes(state, {name: tuple(array.shape) for name, array in feeds.items()})
        if state.graph is not None:
            self._graphs.launch(state.graph)
        elif not state.context.execute_async_v3(self._stream_handle):
            raise S3potError(f"tensorrt stage {state.io.name!r}: execute_async_v3 failed "
                             f"({self._logger.reasons()})")
        return {name: view(state.device[name], shape) for name, shape in state.output_shapes.items()}

    def _set_shapes(self, state: _Stage, shapes: dict) -> None:
        """Give the context new input shapes (and drop its graph); unchanged shapes cost nothing."""
        if shapes == state.shapes:
            return
        self._drop_graph(state)
        state.shapes = None  # until every input is set
        for name, shape in shapes.items():
            if not state.context.set_input_shape(name, shape):
                lo, _, hi = state.io.profile()[name]
                raise ExportError(f"engine '{state.path}': TensorRT refused input {name!r} of shape "
                                  f"{shape}, expected {lo}..{hi} ({self._logger.reasons()}): "
                                  f"{self._hint}")
        missing = state.context.infer_shapes()
        if missing:
            raise S3potError(f"tensorrt stage {state.io.name!r}: shapes of {list(missing)} not "
                             f"specified after set_input_shape ({self._logger.reasons()})")
        state.output_shapes = {spec.name: self._output_shape(state, spec, shapes)
                               for spec in state.io.outputs}
        state.shapes = shapes

    def _output_shape(self, state: _Stage, spec: TensorSpec, shapes: dict) -> tuple[int, ...]:
        """TensorRT's shape of output ``spec`` at input ``shapes``; one the IO table does not
        allow (it could overrun the buffer) is refused."""
        shape = tuple(int(d) for d in state.context.get_tensor_shape(spec.name))
        if not fits(spec, shape) or _count(shape) > _count(spec.shape_at("max")):
            raise ExportError(f"engine '{state.path}': output {spec.name!r}: expected shape "
                              f"{spec.shape_text()} (IO table), got {shape} for inputs "
                              f"{shapes}: {self._hint}")
        return shape

    # -- CUDA graphs -------------------------------------------------------------------------
    def _capture_if_due(self, state: _Stage) -> None:
        """After an uncaptured run at new shapes (the warm-up), capture the stage for the next
        calls at these shapes; a failed capture leaves the stage uncaptured for good."""
        if (self._graphs is None or state.io.name not in GRAPH_STAGES or state.graph is not None
                or state.graphs_failed):
            return
        try:
            state.graph = self._graphs.capture(
                lambda: state.context.execute_async_v3(self._stream_handle))
        except GraphError as exc:
            state.graphs_failed = True
            log.warning("tensorrt stage %r: CUDA graph capture failed (%s; %s); running it "
                        "without a graph", state.io.name, exc, self._logger.reasons())
            return
        log.debug("tensorrt stage %r: CUDA graph captured at %s", state.io.name, state.shapes)

    def _drop_graph(self, state: _Stage) -> None:
        if state.graph is not None:
            self._graphs.destroy(state.graph)
            state.graph = None

    # -- prompt selection on the device ------------------------------------------------------
    def select(self, embeddings: np.ndarray, point: np.ndarray, face_mask: np.ndarray,
               selector: str = "auto", timings: dict | None = None):
        """FE on the image / reference pair, then prompt selection (SPEC stages 3-4).

        ``embeddings`` ``2 x 256 x 64 x 64`` (Z, Z_r), ``point`` ``2 x 1 x 2``, ``face_mask``
        ``64 x 64`` bool. With ``selector`` ``"auto"`` or ``"cuda"`` FE's output stays on the
        GPU: the two ``4096 x 256`` halves of its device buffer (Z_e, Z_re) go to
        :func:`s3pot.kernels.cuda.select_prompts_cuda` once the stream is synchronised. With
        ``"numba"`` or ``"reference"`` the tokens come to the host first. Returns a
        :class:`~s3pot.kernels.reference.PromptSelection`; adds the seconds of ``"fe"`` and
        ``"prompt_selection"`` to ``timings`` when given.
        """
        from s3pot.kernels.selection import resolve_backend

        backend = "cuda" if selector == "auto" else resolve_backend(selector)
        if backend != "cuda":
            return super().select(embeddings, point, face_mask, backend, timings)
        feeds = self._device_select_feeds(embeddings, point, face_mask)
        from s3pot.kernels import cuda as kernels

        state = self._stages[FE.name]
        with timed(timings, FE.name):
            tokens = self._run(state, feeds)[ENHANCED_TOKENS]  # 2 x 4096 x 256, on the device
            self._stream.synchronize()  # the kernel runs on the default stream
        with timed(timings, SELECTION_TIMING):
            selection = kernels.select_prompts_cuda(tokens[0], tokens[1], face_mask)  # Z_e, Z_re
        self._capture_if_due(state)
        return selection
