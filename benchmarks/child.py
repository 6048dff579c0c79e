"""One measured path of ``s3pot bench``, run in its own process (``python -m s3pot.benchmarks.child
CONFIG``) so that its peak host memory is its own.

The parent writes ``CONFIG`` (JSON: the path, the model, the sample, the run counts, where to
write) and then drives the process one sample at a time, so that it can interleave the paths
(see :func:`.bench.drive_paths`). The conversation is one JSON line each way:

- the child builds the path, runs its warm-up samples and says ``{"status": "ready",
  "build_s": ...}``;
- ``run`` (a line on its standard input): one timed sample, answered ``{"status": "ran",
  "timings": {...}, "started": ..., "page_faults": ...}`` (its start, seconds since the epoch;
  the process's minor page faults during it, None where the OS does not count them);
- ``finish``: the video case, the accuracy arrays, the floor's GEMM rate; the child writes
  ``result.json`` (what ran) and ``arrays.npz`` (prompts, mask, logits, and each stage's output
  on the baseline's inputs, for the accuracy columns), says ``{"status": "done"}`` and exits.

Replies go to the process's original standard output; anything a library prints goes to its
standard error, which the parent keeps in a file.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from s3pot.core.io_table import DECODER, ENCODER, FE, SA

#: Stages re-run on the baseline's recorded inputs, so their error is their own (the encoder's
#: input is the same pixels everywhere, so its own output is compared).
ISOLATED_STAGES = (FE.name, SA.name, DECODER.name)
#: Seconds a child waits after a sample before it answers when the paths are interleaved, so that
#: its libraries' worker threads (OpenMP, ONNX Runtime, TBB spin a while after their work) are
#: idle before the next path's sample runs. Run one after another, a path's next sample is its own
#: and the parent passes 0.
SETTLE_S = 0.3


def minor_page_faults() -> int | None:
    """This process's minor page faults so far (every thread's), None where the OS has no
    ``getrusage``. A fault is a fresh page the kernel maps in: an allocator that hands freed
    memory back and maps it again pays one per page on every call."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def allocator_env() -> dict[str, str]:
    """The settings of this process's environment that change how memory is allocated and freed
    (glibc's ``MALLOC_`` variables and tunables, a preloaded allocator)."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD")}


def _spec(config: dict):
    """The :class:`~s3pot.runtime.backends.ModelSpec` of this path: the variant and its weights for
    the baseline and torch, the export folder for the graph and engine backends."""
    from s3pot.runtime.backends import ModelSpec

    path, weights = config["path"], config["weights"]
    common = {"precision": path["precision"], "device": path["device"], "threads": config["threads"]}
    if path["backend"] in ("authors", "torch"):
        return ModelSpec(variant=config["variant"], checkpoint=weights.get("checkpoint"),
                         adapter=weights.get("adapter"), random_weights=weights["kind"] == "random",
                         seed=weights.get("seed", 0), **common)
    return ModelSpec(folder=Path(config["model"]), **common)


def _timed_sample(prepare, run) -> tuple[dict, object]:
    """One sample end to end: ``prepare()`` timed as ``preprocess``, then ``run(prepared,
    timings)``, which adds its stages; ``total`` is the whole. Returns the timings and what
    ``run`` returned."""
    start = time.perf_counter()
    prepared = prepare()
    timings = {"preprocess": time.perf_counter() - start}
    result = run(prepared, timings)
    timings["total"] = time.perf_counter() - start
    return timings, result


class _Recorder:
    """Keeps each stage's first output of the next run (wraps ``runner.infer``)."""

    def __init__(self, runner) -> None:
        self.outputs: dict = {}
        self.on = False
        self._infer = runner.infer
        runner.infer = self

    def __call__(self, stage: str, feeds: dict) -> dict:
        out = self._infer(stage, feeds)
        if self.on and stage not in self.outputs:
            self.outputs[stage] = {k: np.array(v) for k, v in out.items()}
        return out


class CudaEventTimer:
    """Device time of each stage on a CUDA path, by CUDA events around ``runner.infer`` on
    PyTorch's current stream (the torch runner's; TensorRT's own stream is not bracketed, so
    TensorRT paths are left to the wall clock). ``times[stage]`` lists milliseconds per call while
    ``on``; the events are read after each call, which already waited for its host outputs."""

    def __init__(self, runner, torch) -> None:
        self.torch, self.on = torch, False
        self.times: dict[str, list[float]] = {}
        self._infer = runner.infer
        runner.infer = self

    def __call__(self, stage: str, feeds: dict) -> dict:
        if not self.on:
            return self._infer(stage, feeds)
        start = self.torch.cuda.Event(enable_timing=True)
        end = self.torch.cuda.Event(enable_timing=True)
        start.record()
        out = self._infer(stage, feeds)
        end.record()
        end.synchronize()
        self.times.setdefault(stage, []).append(float(start.elapsed_time(end)))
        return out

    def medians(self, runs: int) -> dict[str, float]:
        """Median device milliseconds per sample of each stage (calls of one sample summed)."""
        return {stage: float(np.median(np.asarray(values).reshape(runs, -1).sum(axis=1)))
                for stage, values in self.times.items() if len(values) % runs == 0}


def peak_host_bytes() -> int:
    """This process's peak resident set since it started executing: ``VmHWM`` of its own address
    space. (``ru_maxrss`` would also count the parent's pages that the fork shared before exec.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _device_memory(config: dict) -> int | None:
    """Peak device memory in bytes where it can be read (PyTorch's allocator), else None."""
    if config["path"]["device"] == "cpu":
        return None
    try:
        import torch
    except ImportError:
        return None
    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


class BaselineSession:
    """The authors' way (:class:`.baseline.AuthorsPipeline`), one sample per :meth:`sample`."""

    def __init__(self, config: dict, prepare) -> None:
        from .baseline import AuthorsPipeline

        start = time.perf_counter()
        from s3pot.runtime.backends.torch import load_model

        self.config, self.prepare = config, prepare
        self.pipeline = AuthorsPipeline(load_model(_spec(config))[0], config["variant"],
                                        device=config["path"]["device"])
        self.build_s = time.perf_counter() - start
        self.first = None

    def sample(self, timed: bool) -> dict:
        """One sample end to end; the first one records every stage's inputs and outputs."""
        record = self.first is None
        timings, result = _timed_sample(self.prepare, lambda prepared, timings:
                                        self.pipeline.segment(prepared, timings, record=record))
        if record:
            self.first = result
        return timings

    def finish(self) -> tuple[dict, dict]:
        own = self.pipeline.time_own_encoder(self.prepare())
        arrays = _result_arrays(self.first)
        for stage, (feeds, output) in self.first.stage_io.items():
            arrays[f"output:{stage}"] = output
            for name, value in feeds.items():
                arrays[f"feed:{stage}:{name}"] = value
        return {"build_s": self.build_s, "video_runs": [],
                "runner": "PyTorch eager FP32, the authors' way (separate encoder calls, Python "
                          f"greedy scan; {self.pipeline.modules})",
                "encoder_source": self.pipeline.sam.encoder_source, "own_encoder_s": own}, arrays


class PipelineSession:
    """This runtime's :class:`~s3pot.runtime.pipeline.Pipeline` on one backend and precision."""

    def __init__(self, config: dict, prepare) -> None:
        from s3pot.runtime.pipeline import Pipeline

        start = time.perf_counter()
        from s3pot.runtime.backends import create_runner

        self.config, self.prepare = config, prepare
        self.runner = create_runner(config["path"]["backend"], _spec(config))
        self.recorder = _Recorder(self.runner)
        self.events = None
        if config["path"]["device"] == "cuda" and config["path"]["backend"] == "torch":
            import torch

            self.events = CudaEventTimer(self.runner, torch)
        self.context = {"normalization": config["normalization"],
                        "face_set": tuple(config["face_set"])}
        self.pipeline = Pipeline(self.runner, reference_cache=0, **self.context)
        self.build_s = time.perf_counter() - start
        self.timed = 0
        self.segmentation = None

    def sample(self, timed: bool) -> dict:
        """One sample end to end; the first timed one records each stage's first output."""
        self.recorder.on = timed and self.timed == 0
        if self.events is not None:
            self.events.on = timed
        timings, segmentation = _timed_sample(self.prepare, self.pipeline.run)
        self.recorder.on = False
        if self.events is not None:
            self.events.on = False
        if timed:
            self.timed += 1
            self.segmentation = segmentation
        return timings

    def finish(self) -> tuple[dict, dict]:
        from s3pot.runtime.pipeline import Pipeline

        config, runner = self.config, self.runner
        device_ms = self.events.medians(self.timed) if self.events is not None else None
        # The fixed-reference (video) case: the reference's embedding cached after the first frame.
        video = Pipeline(runner, reference_cache=1, **self.context)
        video_runs = [_timed_sample(self.prepare, video.run)[0]
                      for _ in range(1 + config["video_runs"])][1:]  # the first fills the cache
        arrays = _result_arrays(self.segmentation)
        arrays[f"output:{ENCODER.name}"] = self.recorder.outputs[ENCODER.name][
            ENCODER.output_names[0]][:1]  # the image's embedding (the first of the batch)
        baseline = np.load(config["baseline_arrays"], allow_pickle=False) \
            if config.get("baseline_arrays") else None
        if baseline is not None:
            for stage in ISOLATED_STAGES:
                prefix = f"feed:{stage}:"
                feeds = {key[len(prefix):]: baseline[key] for key in baseline.files
                         if key.startswith(prefix)}
                out = runner.infer(stage, feeds)
                arrays[f"output:{stage}"] = next(iter(out.values()))
        info = runner.describe()
        self.pipeline.close()
        return {"build_s": self.build_s, "video_runs": video_runs, "runner": info,
                "video_cache_hits": video.stats.reference_cache_hits,
                "device_stage_ms": device_ms}, arrays


def _result_arrays(result) -> dict:
    return {"occlusion": result.occlusion, "mask_logits": result.low_res_logits,
            "occlusion_tokens": result.occlusion_tokens, "face_tokens": result.face_tokens,
            "initial_token": np.array(result.initial_token)}


class _Channel:
    """The line-per-message link to the parent: commands on standard input, replies on the
    process's original standard output (file descriptor 1 is pointed at standard error first,
    so that nothing a library prints can corrupt a reply)."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)

    def send(self, **message) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    def receive(self) -> str:
        """The next command; "" when the parent has gone (end of input)."""
        return sys.stdin.readline().strip()


def main(argv=None) -> int:
    from s3pot.runtime.preprocess import prepare_inputs

    config = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    channel = _Channel()
    normalization, face_set = config["normalization"], config["face_set"]

    def prepare():
        return prepare_inputs(*config["sample"], normalization=normalization, face_set=tuple(face_set))

    session = (BaselineSession if config["path"]["backend"] == "authors" else PipelineSession)(
        config, prepare)
    for _ in range(config["warmup"]):
        session.sample(timed=False)
    settle = config["settle_s"]
    time.sleep(settle)
    channel.send(status="ready", build_s=session.build_s)
    command = channel.receive()
    while command == "run":
        started, faults = time.time(), minor_page_faults()
        timings = session.sample(timed=True)
        if faults is not None:
            faults = minor_page_faults() - faults
        time.sleep(settle)
        channel.send(status="ran", timings=timings, started=started, page_faults=faults)
        command = channel.receive()
    if command != "finish":
        return 1  # the parent has gone
    result, arrays = session.finish()
    if config.get("floor", True):  # the library's GEMM rate, in this process, right after its runs
        from .floor import float_rate, gemm_rate

        library = "torch" if config["path"]["backend"] == "authors" else config["path"]["backend"]
        where = (config["path"]["precision"], config["path"]["device"], config["threads"])
        gflops, what = gemm_rate(library, *where)
        result["gemm"] = {"gflops": gflops, "measured": what}
        floats = float_rate(library, *where)
        if floats is not None:  # INT8: attention runs in floating point, at this rate
            result["gemm"].update(float_gflops=floats[0], float_measured=floats[1])
    result["allocator_env"] = allocator_env()
    result["device_memory_bytes"] = _device_memory(config)
    result["peak_host_bytes"] = peak_host_bytes()
    out = Path(config["out"])
    np.savez(out / "arrays.npz", **arrays)
    (out / "result.json").write_text(json.dumps(result))
    channel.send(status="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
