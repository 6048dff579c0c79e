"""CUDA graphs around ``execute_async_v3``, through cuda-python's runtime bindings.

Numba (which holds the runner's memory and stream) cannot capture graphs, so capture and replay go
through ``cuda.bindings.runtime`` (cuda-python >= 12.6) or ``cuda.cudart`` (older cuda-python), on
Numba's stream handle, as NVIDIA's ``demo/Diffusion`` does. The recipe is trtexec's
(``samples/common/sampleInference.cpp``): shapes and addresses set, one uncaptured
``execute_async_v3`` and a synchronise first, then capture one more; if that enqueue fails, the
capture is discarded and the stage runs uncaptured. A graph freezes the shapes, the addresses and
the context's state, so a shape change drops it (see ``TensorRTRunner``).

Without cuda-python, :func:`load_cudart` answers None and the runner runs without graphs.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Why graphs are off when cuda-python is missing (shown in RunnerInfo.provider).
NO_CUDA_PYTHON = "cuda-python not installed"


def load_cudart():
    """cuda-python's CUDA runtime module, or None when cuda-python is not installed."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python before 12.6
        except ImportError:
            return None
    return cudart


class GraphError(Exception):
    """A cuda-python call failed; capture is abandoned and the stage runs without a graph."""


class CudaGraphs:
    """Capture, launch and destroy graphs of one stream with cuda-python's runtime bindings."""

    def __init__(self, cudart, stream_handle: int) -> None:
        self.cudart = cudart
        self.stream = stream_handle

    def _check(self, result, what: str):
        """cuda-python returns ``(cudaError_t, values...)``: the values, or GraphError."""
        err, *values = result
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise GraphError(f"{what} returned {getattr(err, 'name', err)}")
        return values[0] if len(values) == 1 else values

    def capture(self, enqueue) -> object:
        """The instantiated graph of what ``enqueue()`` (one ``execute_async_v3``, returning its
        bool) puts on the stream. Raises GraphError, leaving the stream out of capture mode."""
        cudart = self.cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(cudart.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
        try:
            enqueued = bool(enqueue())
        except BaseException:
            self._end_failed_capture()
            raise
        if not enqueued:
            self._end_failed_capture()
            raise GraphError("execute_async_v3 returned False during stream capture")
        graph = self._check(cudart.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
        try:
            graph_exec = self._check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            # cuda-python 11 also returned the error node and log buffer: the executable is first
            return graph_exec[0] if isinstance(graph_exec, list) else graph_exec
        finally:
            cudart.cudaGraphDestroy(graph)  # the executable graph keeps what it needs

    def _end_failed_capture(self) -> None:
        err, graph = self.cudart.cudaStreamEndCapture(self.stream)
        if err == self.cudart.cudaError_t.cudaSuccess and graph is not None:
            self.cudart.cudaGraphDestroy(graph)
        self.cudart.cudaGetLastError()  # clear the capture's error state

    def launch(self, graph_exec) -> None:
        self._check(self.cudart.cudaGraphLaunch(graph_exec, self.stream), "cudaGraphLaunch")

    def destroy(self, graph_exec) -> None:
        err, = self.cudart.cudaGraphExecDestroy(graph_exec)
        if err != self.cudart.cudaError_t.cudaSuccess:
            log.warning("cudaGraphExecDestroy returned %s", getattr(err, "name", err))
