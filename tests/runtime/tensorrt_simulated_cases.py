"""The TensorRT runner end to end under Numba's CUDA simulator, against a fake TensorRT that runs
each engine's ONNX graph in ONNX Runtime (tests/fake_tensorrt.py).

Not collected on its own (no ``test_`` prefix): ``test_tensorrt_runner.py`` runs this file in a
subprocess with ``NUMBA_ENABLE_CUDASIM=1``, which must be set before ``numba.cuda`` is imported.
Under the simulator a "device" array is host memory, so the fake engine reads its inputs from and
writes its outputs to the very buffers the runner allocated and bound: what is checked here is the
runner's plumbing (buffers, views, shapes, copies, graphs), and the graphs are the tiny variant's
real ones (``s3pot export --variant tiny --random-weights``), compared with the onnxruntime backend.
"""
from __future__ import annotations

import shutil
import sys
from enum import IntEnum
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from fake_tensorrt import make_export_folder, make_fake_tensorrt
from helpers import astronaut_sample
from s3pot.core.errors import ExportError, S3potInputError
from s3pot.core.gpu import GpuInfo
from s3pot.core.io_table import (DECODER, ENCODER, ENHANCED_TOKENS, FE, IMAGE_EMBEDDINGS,
                                 INITIAL_POINT, PIXELS, POINT_COORDS, POINT_LABELS, SA, STAGES)
from s3pot.core.sidecar import engine_path, read_sidecar, sidecar_path, write_sidecar
from s3pot.core.spec import GRID_SIZE, NUM_TOKENS, PROMPT_DIM

numba = pytest.importorskip("numba")
if not numba.config.ENABLE_CUDASIM:
    pytest.skip("run through test_tensorrt_runner.py (needs NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numba import cuda  # noqa: E402  (after the simulator check on purpose)

from s3pot.export.tensorrt import build_engines  # noqa: E402
from s3pot.runtime.backends import ModelSpec, create_runner  # noqa: E402
from s3pot.runtime.backends.tensorrt import TensorRTRunner, find_engines  # noqa: E402
from s3pot.runtime.backends.tensorrt.runner import device_pointer  # noqa: E402

TRT10, TRT11 = "10.16.0.1", "11.1.0.5"
GPU = GpuInfo("Fake GPU", "9.0", "test")
ATOL = 1e-5  # same graphs, same ONNX Runtime: only the plumbing could differ
IO_TENSORS = sum(len(s.inputs) + len(s.outputs) for s in STAGES.values())


# -- fixtures --------------------------------------------------------------------------------------
def build(folder, fake):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "tensorrt", fake)
        build_engines(folder, precisions=["fp32"], gpu=GPU)


def activated(folder, fake) -> TensorRTRunner:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "tensorrt", fake)
        return TensorRTRunner(find_engines(folder), gpu=GPU).activate()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A tiny export with the default simplifier (standard operators only, as TensorRT's parser
    and the fake's require)."""
    from s3pot.export.folder import ExportRequest, export_folder

    folder = tmp_path_factory.mktemp("tiny") / "model"
    export_folder(ExportRequest(variant="tiny", random_weights=True, verify=False), folder)
    return folder


@pytest.fixture(scope="module")
def engines(export_dir, tmp_path_factory):
    """version -> (export folder with fp32 engines built by that fake TensorRT, the fake)."""
    built = {}
    for version in (TRT10, TRT11):
        folder = export_dir
        if version != TRT10:  # engines live in the export folder: one copy per version
            folder = tmp_path_factory.mktemp(version) / "model"
            shutil.copytree(export_dir, folder)
        fake = make_fake_tensorrt(version, gpu_name=GPU.name,
                                  compute_capability=GPU.compute_capability)
        build(folder, fake)
        built[version] = (folder, fake)
    return built


@pytest.fixture(scope="module")
def runner(engines):
    folder, fake = engines[TRT10]
    runner = activated(folder, fake)
    yield runner
    runner.deactivate()


@pytest.fixture(scope="module")
def reference(export_dir):
    """The onnxruntime backend on the same graphs, on the CPU."""
    runner = create_runner("onnxruntime", ModelSpec(folder=export_dir, device="cpu")).activate()
    yield runner
    runner.deactivate()


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((2, 3, 1024, 1024)).astype(np.float32)
    point = np.array([[[500.0, 420.0]], [[500.0, 420.0]]], np.float32)  # 2 x 1 x 2
    points = {n: rng.uniform(0, 1024, (1, n, 2)).astype(np.float32) for n in (37, 211)}
    labels = {n: (rng.random((1, n)) < 0.3).astype(np.float32) for n in (37, 211)}
    return SimpleNamespace(pixels=pixels, point=point, points=points, labels=labels)


@pytest.fixture(scope="module")
def expected(reference, inputs):
    """The onnxruntime backend's outputs on ``inputs``, computed once."""
    z = reference.encode(inputs.pixels)
    prompts = {n: reference.reweight(inputs.points[n], inputs.labels[n]) for n in inputs.points}
    return SimpleNamespace(
        z=z, tokens=reference.enhance(z, inputs.point),
        prompts=prompts, masks={n: reference.decode(z[:1], p) for n, p in prompts.items()})


@pytest.fixture
def face_mask():
    mask = np.zeros((GRID_SIZE, GRID_SIZE), bool)
    mask[20:44, 18:46] = True
    return mask


@pytest.fixture
def kernel_calls(monkeypatch):
    """``select_prompts_cuda`` replaced by a spy: it checks it got device arrays (no host copy on
    the way), then selects on host copies with the reference (the real kernel is far too slow to
    simulate at 4096 x 256; tests/kernels/test_cuda_simulator.py covers it)."""
    from s3pot.kernels import cuda as kernels
    from s3pot.kernels import select_prompts

    calls = []

    def spy(z_e, z_re, face_mask):
        assert getattr(z_e, "__cuda_ndarray__", False) and getattr(z_re, "__cuda_ndarray__", False)
        assert z_e.shape == z_re.shape == (NUM_TOKENS, PROMPT_DIM)
        calls.append((device_pointer(z_e), device_pointer(z_re)))
        return select_prompts(z_e.copy_to_host(), z_re.copy_to_host(), face_mask, "reference")

    monkeypatch.setattr(kernels, "select_prompts_cuda", spy)
    return calls


# -- outputs equal the onnxruntime backend's ---------------------------------------------------------
@pytest.mark.parametrize("version", [TRT10, TRT11])
def test_every_stage_equals_the_onnxruntime_backend(engines, inputs, expected, version):
    folder, fake = engines[version]
    runner = activated(folder, fake)
    try:
        z = runner.encode(inputs.pixels)  # 2 x 256 x 64 x 64
        np.testing.assert_allclose(z, expected.z, atol=ATOL, rtol=0)
        np.testing.assert_allclose(runner.encode(inputs.pixels[:1]), expected.z[:1], atol=ATOL,
                                   rtol=0)  # batch 1: the same engine at another shape
        np.testing.assert_allclose(runner.enhance(expected.z, inputs.point), expected.tokens,
                                   atol=ATOL, rtol=0)
        for n in (211, 37, 211):  # N changes between calls: shapes reset, buffers reused
            prompts = runner.reweight(inputs.points[n], inputs.labels[n])
            assert prompts.shape == (1, n + 1, PROMPT_DIM)
            np.testing.assert_allclose(prompts, expected.prompts[n], atol=ATOL, rtol=0)
            np.testing.assert_allclose(runner.decode(expected.z[:1], expected.prompts[n]),
                                       expected.masks[n], atol=ATOL, rtol=0)
        info = runner.info
        assert (info.backend, info.version, info.device, info.precision) == (
            "tensorrt", version, GPU.name, "fp32")
        assert info.source == str(folder / "engines" / "fp32")
        assert "CUDA graphs off (cuda-python not installed)" in info.provider
        assert sorted(fake.record.contexts) == sorted(STAGES)  # one context per engine
    finally:
        runner.deactivate()


def test_outputs_are_copies_not_views_of_the_buffers(runner, inputs, expected):
    first = runner.reweight(inputs.points[37], inputs.labels[37])
    runner.reweight(inputs.points[211], inputs.labels[211])
    np.testing.assert_allclose(first, expected.prompts[37], atol=ATOL, rtol=0)


def test_pipeline_gives_the_same_prompts_and_mask(engines, reference, kernel_calls, monkeypatch):
    from s3pot.core import gpu as device
    from s3pot.runtime.pipeline import Pipeline

    folder, fake = engines[TRT10]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(device, "PROBES", [lambda: GPU])  # create_runner asks query_gpu
    sample = astronaut_sample()
    with Pipeline(create_runner("tensorrt", ModelSpec(folder=folder))) as trt_pipeline:
        got = trt_pipeline.segment(*sample)  # selector auto: the device path
    want = Pipeline(reference, selector="reference").segment(*sample)
    assert len(kernel_calls) == 1
    assert got.initial_token == want.initial_token
    np.testing.assert_array_equal(got.occlusion_tokens, want.occlusion_tokens)
    np.testing.assert_array_equal(got.face_tokens, want.face_tokens)
    np.testing.assert_allclose(got.low_res_logits, want.low_res_logits, atol=ATOL, rtol=0)
    assert set(got.timings) >= {"encoder", "fe", "prompt_selection", "sa", "decoder"}


# -- prompt selection on the device ------------------------------------------------------------------
def test_select_hands_the_fe_buffer_halves_to_the_cuda_kernel(runner, inputs, expected,
                                                              face_mask, kernel_calls):
    from s3pot.kernels import select_prompts

    want = select_prompts(expected.tokens[0], expected.tokens[1], face_mask, "reference")
    timings = {}
    for selector in ("auto", "cuda"):
        got = runner.select(expected.z, inputs.point, face_mask, selector, timings)
        np.testing.assert_array_equal(got.occlusion, want.occlusion)
        np.testing.assert_array_equal(got.face, want.face)
    buffer = device_pointer(runner._stages[FE.name].device[ENHANCED_TOKENS])
    half = NUM_TOKENS * PROMPT_DIM * np.dtype(np.float32).itemsize
    assert kernel_calls == [(buffer, buffer + half)] * 2  # Z_e, Z_re in place
    assert timings["fe"] > 0 and timings["prompt_selection"] > 0
    for selector in ("numba", "reference"):  # host selectors: tokens copied back first
        got = runner.select(expected.z, inputs.point, face_mask, selector)
        np.testing.assert_array_equal(got.occlusion, want.occlusion)
        np.testing.assert_array_equal(got.face, want.face)
    assert len(kernel_calls) == 2


# -- bad input, refused before anything runs -----------------------------------------------------------
def test_bad_feeds_are_refused_before_any_engine_runs(engines, runner, inputs, expected,
                                                      face_mask):
    record = engines[TRT10][1].record
    runner.reweight(inputs.points[37], inputs.labels[37])
    before = len(record.executions)
    z, point = expected.z, inputs.point
    bad = [
        (ENCODER.name, {"image": inputs.pixels}, "expected inputs"),
        (ENCODER.name, {PIXELS: inputs.pixels.astype(np.float64)}, "expected dtype float32"),
        (ENCODER.name, {PIXELS: inputs.pixels[:, :, :512]}, "expected shape"),
        (FE.name, {IMAGE_EMBEDDINGS: z, INITIAL_POINT: point[:1]}, "axis"),
        (SA.name, {POINT_COORDS: np.zeros((1, NUM_TOKENS + 1, 2), np.float32),
                   POINT_LABELS: np.zeros((1, NUM_TOKENS + 1), np.float32)}, "expected shape"),
        (DECODER.name, {IMAGE_EMBEDDINGS: z[:1], "prompts": expected.prompts[37]},
         "expected inputs"),  # a name the IO table does not have
    ]
    for stage, feeds, message in bad:
        with pytest.raises(S3potInputError, match=message):
            runner.infer(stage, feeds)
    with pytest.raises(S3potInputError, match="expected a batch of 2"):
        runner.select(z[:1], point[:1], face_mask)
    with pytest.raises(S3potInputError, match="face mask"):
        runner.select(z, point, np.zeros((GRID_SIZE, GRID_SIZE), bool))
    with pytest.raises(S3potInputError, match="selection backend"):
        runner.select(z, point, face_mask, "gpu")
    assert len(record.executions) == before


# -- memory: allocated once, freed on deactivate ---------------------------------------------------------
def test_buffers_are_allocated_once(engines, inputs, expected, face_mask, kernel_calls,
                                    monkeypatch):
    counts = {"device_array": 0, "pinned_array": 0}

    def counting(name):
        original = getattr(cuda, name)

        def allocate(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)
        return allocate

    for name in counts:
        monkeypatch.setattr(cuda, name, counting(name))
    folder, fake = engines[TRT10]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    runner = TensorRTRunner(find_engines(folder), gpu=GPU).activate()
    assert counts == {"device_array": IO_TENSORS, "pinned_array": IO_TENSORS}
    for n in (37, 211, 37):
        runner.reweight(inputs.points[n], inputs.labels[n])
        runner.decode(expected.z[:1], expected.prompts[n])
    runner.enhance(expected.z[:1], inputs.point[:1])
    runner.select(expected.z, inputs.point, face_mask)
    runner.encode(inputs.pixels[:1])
    assert counts == {"device_array": IO_TENSORS, "pinned_array": IO_TENSORS}
    runner.deactivate()
    assert runner._stages == {} and runner._runtime is None and runner._stream is None
    runner.activate()  # a second life allocates afresh, once
    assert counts == {"device_array": 2 * IO_TENSORS, "pinned_array": 2 * IO_TENSORS}
    runner.deactivate()


# -- CUDA graphs, with a fake of cuda-python's runtime bindings ------------------------------------------
class FakeCudart(ModuleType):
    """The part of ``cuda.bindings.runtime`` the runner uses. Capture collects what the fake
    TensorRT enqueues on the stream (``fake.stream_capture``); a launch runs it again."""

    cudaError_t = IntEnum("cudaError_t", [("cudaSuccess", 0), ("cudaErrorUnknown", 999)])
    cudaStreamCaptureMode = IntEnum("cudaStreamCaptureMode", [
        ("cudaStreamCaptureModeGlobal", 0), ("cudaStreamCaptureModeThreadLocal", 1),
        ("cudaStreamCaptureModeRelaxed", 2)])

    def __init__(self, trt):
        super().__init__("cuda.bindings.runtime")
        self.capturing, self.calls, self.fail_capture = {}, [], False
        trt.stream_capture = self.capturing.get

    def _ok(self, name, *values):
        self.calls.append(name)
        return (self.cudaError_t.cudaSuccess, *values)

    def cudaStreamBeginCapture(self, stream, mode):
        assert mode == self.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        if self.fail_capture:
            self.calls.append("cudaStreamBeginCapture")
            return (self.cudaError_t.cudaErrorUnknown,)
        self.capturing[int(stream)] = []
        return self._ok("cudaStreamBeginCapture")

    def cudaStreamEndCapture(self, stream):
        return self._ok("cudaStreamEndCapture", list(self.capturing.pop(int(stream))))

    def cudaGraphInstantiate(self, graph, flags):
        return self._ok("cudaGraphInstantiate", SimpleNamespace(work=list(graph)))

    def cudaGraphLaunch(self, graph_exec, stream):
        for work in graph_exec.work:
            work()
        return self._ok("cudaGraphLaunch")

    def cudaGraphDestroy(self, graph):
        return self._ok("cudaGraphDestroy")

    def cudaGraphExecDestroy(self, graph_exec):
        return self._ok("cudaGraphExecDestroy")

    def cudaGetLastError(self):
        return self._ok("cudaGetLastError")


@pytest.fixture
def cudart(engines, monkeypatch):
    _, fake = engines[TRT10]
    runtime = FakeCudart(fake)
    package, bindings = ModuleType("cuda"), ModuleType("cuda.bindings")
    package.bindings, bindings.runtime = bindings, runtime
    for name, module in (("cuda", package), ("cuda.bindings", bindings),
                         ("cuda.bindings.runtime", runtime)):
        monkeypatch.setitem(sys.modules, name, module)
    yield runtime
    monkeypatch.setattr(fake, "stream_capture", None)


def test_cuda_graphs_capture_after_a_warm_up_and_replay(engines, cudart, inputs, expected):
    folder, fake = engines[TRT10]
    runner = activated(folder, fake)
    try:
        assert "CUDA graphs on (encoder, fe)" in runner.info.provider
        runs = len(fake.record.executions)
        tokens = runner.enhance(expected.z, inputs.point)  # warm-up: uncaptured, then captured
        assert fake.record.captured == ["fe"] and len(fake.record.executions) == runs + 1
        np.testing.assert_allclose(tokens, expected.tokens, atol=ATOL, rtol=0)
        other = runner.enhance(expected.z * 2.0, inputs.point)  # a replay reads the new inputs
        assert not np.allclose(other, expected.tokens, atol=ATOL, rtol=0)
        np.testing.assert_allclose(runner.enhance(expected.z, inputs.point), expected.tokens,
                                   atol=ATOL, rtol=0)
        assert cudart.calls.count("cudaGraphLaunch") == 2 and fake.record.captured == ["fe"]
        assert len(fake.record.executions) == runs + 3
        runner.enhance(expected.z[:1], inputs.point[:1])  # another batch size: graph dropped
        assert cudart.calls.count("cudaGraphExecDestroy") == 1
        assert fake.record.captured == ["fe", "fe"]
        runner.reweight(inputs.points[37], inputs.labels[37])  # never captured
        runner.reweight(inputs.points[37], inputs.labels[37])
        assert fake.record.captured == ["fe", "fe"]
    finally:
        runner.deactivate()
    assert cudart.calls.count("cudaGraphExecDestroy") == 2  # the live graph, on deactivate


def test_failed_capture_runs_the_stage_uncaptured(engines, cudart, inputs, expected, caplog):
    folder, fake = engines[TRT10]
    cudart.fail_capture = True
    runner = activated(folder, fake)
    try:
        for _ in range(2):
            np.testing.assert_allclose(runner.enhance(expected.z, inputs.point), expected.tokens,
                                       atol=ATOL, rtol=0)
        assert cudart.calls.count("cudaStreamBeginCapture") == 1  # tried once, then never again
        assert "cudaGraphLaunch" not in cudart.calls
        assert "CUDA graph capture failed" in caplog.text
    finally:
        runner.deactivate()


# -- engines TensorRT itself refuses ------------------------------------------------------------------
@pytest.fixture
def synthetic(tmp_path):
    """A hand-made export (small graphs with the table's input names, tests/fake_tensorrt.py)."""
    folder = make_export_folder(tmp_path / "model", precisions=("fp32",))
    fake = make_fake_tensorrt(TRT10, gpu_name=GPU.name, compute_capability=GPU.compute_capability)
    build(folder, fake)
    return folder, fake


def test_a_plan_tensorrt_cannot_deserialise_is_refused_with_its_reason(synthetic):
    import hashlib
    from dataclasses import replace

    folder, fake = synthetic
    engine = engine_path(folder, ENCODER.name, "fp32")
    engine.write_bytes(b"not a plan")
    sidecar = read_sidecar(engine)
    write_sidecar(engine, replace(sidecar, plan_sha256=hashlib.sha256(b"not a plan").hexdigest()))
    assert sidecar_path(engine).is_file()
    with pytest.raises(ExportError, match=r"encoder.engine.*could not deserialise.*Magic tag does not "
                                          r"match.*s3pot build --model"):
        activated(folder, fake)


def test_an_engine_whose_tensors_differ_from_the_io_table_is_refused(synthetic):
    folder, fake = synthetic  # its graphs keep the table's names, not its output shapes
    with pytest.raises(ExportError, match=r"encoder.engine': tensor 'image_embeddings': expected "
                                          r"shape \(-1, 256, 64, 64\)"):
        activated(folder, fake)
