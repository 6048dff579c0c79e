"""Runs the four stages through :class:`s3pot.models.S3POT`: the reference every other backend is
checked against, and a fast path on a GPU without TensorRT.

Precision ``fp32`` runs the modules as they are, in true FP32 (TF32 off, :func:`fp32_math`). ``fp16`` / ``bf16`` run them under autocast
(matrix products and SAM's attention, which is ``scaled_dot_product_attention`` and so takes
PyTorch's flash / memory-efficient kernels on a GPU, in half precision; norms and softmax in
float32); ``bf16`` also runs on CPUs with AVX512-BF16 or AMX. On CUDA, the fixed-shape stages
(encoder per batch size, FE) are captured once as CUDA graphs and replayed, which removes the
launch overhead of a few hundred small kernels per call. On the CPU the encoder takes one image
at a time (``base.CPU_ENCODER_BATCH``).
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from s3pot.core.errors import S3potInputError
from s3pot.core.io_table import DECODER, ENCODER, FE, PIXELS, SA, get_stage

from ..base import (CPU_ENCODER_BATCH, SELECTION_TIMING, ModelContext, Runner, RunnerInfo,
                    encode_in_parts, timed)

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: IO-table stage -> the S3POT method that computes it.
STAGE_METHODS = {ENCODER.name: "encode", FE.name: "enhance", SA.name: "reweight",
                 DECODER.name: "decode"}
#: Stages whose shapes are fixed per batch size, so a CUDA graph per batch size can replay them.
GRAPHED_STAGES = (ENCODER.name, FE.name)


@contextlib.contextmanager
def fp32_math():
    """FP32 that is FP32 on a GPU: PyTorch lets cuDNN run convolutions in TF32 by default (10-bit
    mantissa; SAM's patch embedding and neck then put the encoder about 5e-4 off in relative L2
    on an H100), and ``torch.set_float32_matmul_precision`` can do the same to matrix products.
    Both are switched off inside, and restored after."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks the first CUDA GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise S3potInputError(f"device {device!r}: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise S3potInputError(f"device {device!r}: no CUDA GPU is visible to PyTorch here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise S3potInputError(f"device {device!r}: expected cuda:0..cuda:{torch.cuda.device_count() - 1}, "
                              f"got index {dev.index}")
    if dev.type not in ("cpu", "cuda"):
        raise S3potInputError(f"device {device!r}: expected auto, cpu, cuda or cuda:N, got {device!r}")
    return dev


class TorchRunner(Runner):
    """Stage methods of an :class:`~s3pot.models.S3POT` in eval mode, NumPy in and out.

    Args:
        model: the S3POT module; ``context`` what it was made with (see :mod:`.loader`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``, ``fp16`` (CUDA only) or ``bf16``.
        cuda_graphs: capture and replay the fixed-shape stages on CUDA (default: on).
    """

    name = "torch"

    def __init__(self, model, context: ModelContext | None = None, *, device: str = "auto",
                 precision: str = "fp32", cuda_graphs: bool = True) -> None:
        if context is None:
            context = ModelContext(variant="custom", normalization="sam",
                                   trained=getattr(model, "trained_context", None))
        super().__init__(context)
        if precision not in DTYPES:
            raise S3potInputError(f"backend torch: expected precision {', '.join(DTYPES)}, got "
                                  f"{precision!r}")
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise S3potInputError("backend torch: fp16 runs on CUDA only; on the CPU use fp32 or "
                                  "bf16")
        self.model = model
        self.precision = precision
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self.graphs: dict = {}  # (stage, input shapes) -> (graph, static inputs, static output)
        self._pool = None  # one memory pool shared by every captured graph
        # CUDA graph replay shares its static buffers: one call at a time there.
        self.thread_safe = self.device.type == "cpu"
        self._cuda_kernels: bool | None = None  # numba.cuda usable (asked once, by select)

    def _activate(self) -> None:
        self.model = self.model.to(self.device).eval()
        provider = "eager"
        if self.precision != "fp32":
            provider += f", autocast {self.precision}"
        if self.use_graphs:
            provider += ", CUDA graphs (encoder, FE)"
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self._info = RunnerInfo(backend=self.name, version=torch.__version__, device=name,
                                provider=provider, precision=self.precision,
                                source=f"variant {self.context.variant}")

    def _deactivate(self) -> None:
        self.graphs.clear()
        self._pool = None
        if self.device.type == "cuda":
            self.model = self.model.cpu()
            torch.cuda.empty_cache()

    def _stage_fn(self, stage: str):
        """The S3POT method that computes ``stage`` (an IO-table stage name)."""
        return getattr(self.model, STAGE_METHODS[stage])

    def _call(self, fn, tensors):
        if self.precision == "fp32":
            with fp32_math():
                return fn(*tensors)
        with torch.autocast(self.device.type, dtype=DTYPES[self.precision]):
            return fn(*tensors)

    def _infer(self, stage: str, feeds: dict) -> dict:
        if (stage == ENCODER.name and self.device.type == "cpu"
                and len(feeds[PIXELS]) > CPU_ENCODER_BATCH):
            return encode_in_parts(lambda part: self._infer(stage, part), feeds[PIXELS],
                                   CPU_ENCODER_BATCH)
        with torch.inference_mode():
            out = self._device_infer(stage, feeds)
            return {get_stage(stage).output_names[0]: out.float().cpu().numpy()}

    def _device_infer(self, stage: str, feeds: dict) -> torch.Tensor:
        """``stage`` on checked host feeds; its output as a tensor on the runner's device."""
        arrays = [feeds[name] for name in get_stage(stage).input_names]
        tensors = [torch.from_numpy(a).to(self.device, non_blocking=True) for a in arrays]
        fn = self._stage_fn(stage)
        if self.use_graphs and stage in GRAPHED_STAGES:
            return self._replay(stage, fn, tensors)
        return self._call(fn, tensors)

    def select(self, embeddings: np.ndarray, point: np.ndarray, face_mask: np.ndarray,
               selector: str = "auto", timings: dict | None = None):
        """FE, then prompt selection (SPEC stages 3-4). On CUDA with ``selector`` ``"auto"`` or
        ``"cuda"``, FE's output stays on the GPU and :func:`s3pot.kernels.cuda.select_prompts_cuda`
        reads it there (as on the TensorRT runner), instead of copying 8 MB of tokens to the host
        for the CPU kernel; ``"auto"`` keeps the CPU kernel where numba.cuda cannot run (said once
        in the log). See :meth:`Runner.select`."""
        if not self._device_selection(selector):
            return super().select(embeddings, point, face_mask, selector, timings)
        from s3pot.kernels.cuda import numba_cuda, select_prompts_cuda

        feeds = self._device_select_feeds(embeddings, point, face_mask)
        with torch.inference_mode():
            with timed(timings, FE.name):
                tokens = self._device_infer(FE.name, feeds).float()  # 2 x 4096 x 256, Z_e, Z_re
                torch.cuda.current_stream(self.device).synchronize()  # numba: its own stream
            with timed(timings, SELECTION_TIMING), numba_cuda().gpus[self._index]:
                return select_prompts_cuda(tokens[0], tokens[1], face_mask)

    @property
    def _index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def _device_selection(self, selector: str) -> bool:
        """Whether :meth:`select` runs the CUDA kernels on FE's device output."""
        if selector not in ("auto", "cuda") or self.device.type != "cuda":
            return False
        if selector == "cuda":
            return True
        if self._cuda_kernels is None:
            from s3pot.core.errors import MissingDependencyError
            from s3pot.kernels.cuda import numba_cuda

            try:
                numba_cuda()
                self._cuda_kernels = True
            except MissingDependencyError as exc:
                log.warning("prompt selection on the CPU: %s", exc)
                self._cuda_kernels = False
        return self._cuda_kernels

    def _replay(self, stage: str, fn, tensors):
        """Run ``fn`` through the CUDA graph captured for these input shapes (captured on first
        use, after warm-up on a side stream as PyTorch's CUDA graph notes require; every graph
        shares one memory pool). A capture that fails turns graphs off for this runner."""
        key = (stage, *(tuple(t.shape) for t in tensors))
        with torch.cuda.device(self.device):  # capture and replay on the runner's GPU
            if key not in self.graphs:
                try:
                    self.graphs[key] = self._capture(fn, tensors)
                except RuntimeError as exc:
                    log.warning("CUDA graph capture of %s failed (%s); running eagerly", stage, exc)
                    self.use_graphs = False
                    return self._call(fn, tensors)
                log.debug("captured a CUDA graph of %s for %s", stage, key[1:])
            graph, static, output = self.graphs[key]
            for dst, src in zip(static, tensors):
                dst.copy_(src)
            graph.replay()
            return output.clone()

    def _capture(self, fn, tensors):
        static = [t.clone() for t in tensors]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._call(fn, static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = self._call(fn, static)
        return graph, static, output
