"""Runs the four graphs of an export folder in OpenVINO on the CPU.

One infer request per stage, reused; the encoder takes one image at a time
(``base.CPU_ENCODER_BATCH``) and is compiled for that batch (see ``loader.compile_stage``); outputs are copied out of OpenVINO's tensors before the next
call overwrites them. A request is not reentrant, so the runner is not thread-safe (the pipeline
serialises it).
"""
from __future__ import annotations

import logging

import numpy as np

from s3pot.core.io_table import ENCODER, PIXELS

from ..base import CPU_ENCODER_BATCH, Runner, RunnerInfo, encode_in_parts
from ..export_folder import ExportFolder
from .loader import compile_stage

log = logging.getLogger(__name__)


class OpenVinoRunner(Runner):
    """The four graphs of a checked export folder, compiled by OpenVINO.

    Args:
        export: the checked export folder (its FP32 graphs).
        precision: ``fp32``, ``bf16`` (OpenVINO's inference precision on this CPU) or ``int8``.
        threads: inference threads (0: OpenVINO's default, one per core).
        cache: keep compiled models in OpenVINO's cache (see :mod:`.loader`).
        int8_encoder: the checked INT8 encoder's IR (``int8`` only), compiled instead of the
            encoder's graph.
    """

    name = "openvino"
    thread_safe = False

    def __init__(self, export: ExportFolder, *, precision: str = "fp32", threads: int = 0,
                 cache: bool = True, int8_encoder=None) -> None:
        super().__init__(export.context)
        if (precision == "int8") != (int8_encoder is not None):
            raise ValueError("openvino runner: an INT8 encoder goes with precision int8, and only")
        self.export, self.precision, self.threads, self.cache = export, precision, threads, cache
        self.int8_encoder = int8_encoder
        self.requests: dict = {}

    def _activate(self) -> None:
        import openvino as ov

        core = ov.Core()
        compiled = {stage: compile_stage(core, self.export, stage, precision=self.precision,
                                         threads=self.threads, cache=self.cache,
                                         model=self.int8_encoder if stage == ENCODER.name else None,
                                         static_batch=CPU_ENCODER_BATCH if stage == ENCODER.name else None)
                    for stage in self.export.graphs}
        self.requests = {stage: model.create_infer_request() for stage, model in compiled.items()}
        used = next(iter(compiled.values())).get_property("INFERENCE_PRECISION_HINT")
        used = getattr(used, "to_string", lambda: str(used))()  # "f32", "bf16"
        if self.int8_encoder is not None:
            used = f"int8 encoder, {used}"
        self._info = RunnerInfo(backend=self.name, version=ov.__version__.split("-")[0], device="cpu",
                                provider=f"CPU ({used})", precision=self.precision,
                                source=str(self.export.folder))

    def _deactivate(self) -> None:
        self.requests = {}

    def _infer(self, stage: str, feeds: dict) -> dict:
        pixels = feeds.get(PIXELS)
        if stage == ENCODER.name and len(pixels) > CPU_ENCODER_BATCH:
            return encode_in_parts(lambda part: self._run(stage, part), pixels, CPU_ENCODER_BATCH)
        return self._run(stage, feeds)

    def _run(self, stage: str, feeds: dict) -> dict:
        request = self.requests[stage]
        request.infer(feeds)
        return {output.get_any_name(): np.array(request.get_tensor(output).data, copy=True)
                for output in request.model_outputs}
