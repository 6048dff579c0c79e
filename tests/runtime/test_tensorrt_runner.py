"""The TensorRT backend (s3pot.runtime.backends.tensorrt) on a machine without TensorRT or a GPU.

Here, in this process: finding engines, refusing engines of another TensorRT version or GPU
before anything is deserialised, refusing bad feeds before anything runs, and importing the
backend with every GPU package blocked (a subprocess). The runner itself (buffers, shapes, copies,
CUDA graphs, prompt selection on the device, parity with the onnxruntime backend) runs under
Numba's CUDA simulator in a subprocess: ``tensorrt_simulated_cases.py``. On a machine with
TensorRT and a GPU, ``test_real_engines_on_the_gpu`` builds and runs real engines.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fake_tensorrt import make_export_folder, make_fake_tensorrt
from helpers import run_under_cuda_simulator
from s3pot.core import gpu as device
from s3pot.core.errors import ExportError, S3potInputError
from s3pot.core.gpu import GpuInfo
from s3pot.core.io_table import (ENCODER, FE, IMAGE_EMBEDDINGS, INITIAL_POINT, PIXELS,
                                 POINT_COORDS, POINT_LABELS, SA, SPARSE_PROMPTS, STAGES)
from s3pot.core.sidecar import engine_path, sidecar_path
from s3pot.core.spec import NUM_TOKENS, PAPER_FACE_SET
from s3pot.core.tensorrt import INSTALL_HINT
from s3pot.export.tensorrt import build_engines
from s3pot.runtime.backends import ModelSpec, create_runner
from s3pot.runtime.backends.tensorrt import TensorRTRunner

TRT10 = "10.16.0.1"
GPU = GpuInfo("Fake GPU", "9.0", "test")
CASES = Path(__file__).with_name("tensorrt_simulated_cases.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A hand-made export folder (tests/fake_tensorrt.py) with the fp32 engines a fake
    TensorRT 10 built on the "Fake GPU"; shared read-only."""
    folder = make_export_folder(tmp_path_factory.mktemp("trt") / "model", precisions=("fp32",))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "tensorrt", make_fake_tensorrt(TRT10))
        build_engines(folder, precisions=["fp32"], gpu=GPU)
    return folder


@pytest.fixture
def copy_of(built, tmp_path):
    """A private copy of ``built``, for tests that damage it."""
    return Path(shutil.copytree(built, tmp_path / "model"))


@pytest.fixture
def machine(monkeypatch):
    """``install(version, gpu)``: this machine gets a fake TensorRT of ``version`` and ``gpu``
    (what :func:`s3pot.core.gpu.query_gpu` answers); returns the fake module."""
    def install(version: str = TRT10, gpu: GpuInfo = GPU):
        fake = make_fake_tensorrt(version, gpu_name=gpu.name,
                                  compute_capability=gpu.compute_capability)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        monkeypatch.setattr(device, "PROBES", [lambda: gpu])
        return fake
    return install


# -- finding engines ---------------------------------------------------------------------------------
def test_create_runner_finds_the_engines_and_what_they_were_made_with(built):
    runner = create_runner("tensorrt", ModelSpec(folder=built))
    assert isinstance(runner, TensorRTRunner) and runner.name == "tensorrt"
    assert not runner.is_active and not runner.thread_safe
    assert runner.engines.engines == {s: engine_path(built, s, "fp32") for s in STAGES}
    assert list(runner.engines.engines) == list(STAGES)
    context = runner.context
    assert (context.variant, context.normalization) == ("tiny", "sam")
    assert context.trained["face_set"] == PAPER_FACE_SET  # "paper" in the manifest, resolved
    assert runner.describe() == "tensorrt (not activated)"


@pytest.mark.parametrize("spec, error, message", [
    (dict(), S3potInputError, "expected an export folder"),
    (dict(device="cpu"), S3potInputError, r"device: expected one of auto, cuda, cuda:0.*'cpu'"),
    (dict(precision="bf16"), ExportError, r"expected one of fp32, fp16.*'bf16'"),
    (dict(variant="vit_h"), ExportError, r"expected variant 'vit_h', got 'tiny'"),
])
def test_bad_specs_are_refused(built, spec, error, message):
    if spec:
        spec = {"folder": built, **spec}
    with pytest.raises(error, match=message):
        create_runner("tensorrt", ModelSpec(**spec))


def test_missing_engines_name_the_file_and_the_build_command(built, copy_of):
    with pytest.raises(ExportError, match=rf"expected the fp16 engine "
                                          rf"'{built}/engines/fp16/encoder.engine' \(and 3 more\), "
                                          rf"got no such file: .*`s3pot build --model {built} "
                                          rf"--precision fp16`"):
        create_runner("tensorrt", ModelSpec(folder=built, precision="fp16"))
    engine_path(copy_of, SA.name, "fp32").unlink()
    with pytest.raises(ExportError, match=rf"engines/fp32/sa.engine', got no such file: build the "
                                          rf"engines with `s3pot build --model {copy_of} "
                                          rf"--precision fp32`"):
        create_runner("tensorrt", ModelSpec(folder=copy_of))


# -- engines of another machine: refused before TensorRT reads them -----------------------------------
# (no parameter id "gpu": tests/conftest.py skips items with that keyword without a GPU)
@pytest.mark.parametrize("change, values", [
    ("tensorrt_version", ("TensorRT 10.16.0.1", "10.16.1.2")),
    ("gpu_model", ("'Fake GPU' (compute capability 9.0)", "'Other GPU' (compute capability 8.6)")),
    ("gpu_name_only", ("'Fake GPU' (compute capability 9.0)", "'Other GPU' (compute capability 9.0)")),
])
def test_engines_of_another_tensorrt_or_gpu_are_refused_before_deserialising(built, machine,
                                                                           change, values):
    version, gpu = TRT10, GPU
    if change == "tensorrt_version":
        version = "10.16.1.2"
    elif change == "gpu_model":
        gpu = GpuInfo("Other GPU", "8.6")
    else:  # TensorRT itself would only warn here (NVIDIA/TensorRT#4233); the sidecar refuses
        gpu = GpuInfo("Other GPU", "9.0")
    fake = machine(version, gpu)
    runner = create_runner("tensorrt", ModelSpec(folder=built))
    with pytest.raises(ExportError) as refused:
        runner.activate()
    message = str(refused.value)
    assert all(value in message for value in values), message
    assert f"engines/fp32/{ENCODER.name}.engine" in message
    assert f"s3pot build --model {built} --precision fp32" in message
    assert fake.record.deserialized == [] and not runner.is_active


def test_an_engine_without_its_sidecar_is_refused(copy_of, machine):
    fake = machine()
    sidecar_path(engine_path(copy_of, FE.name, "fp32")).unlink()
    with pytest.raises(ExportError, match=r"fe.engine': expected its sidecar .*fe.engine.json"):
        create_runner("tensorrt", ModelSpec(folder=copy_of)).activate()
    assert fake.record.deserialized == []


# -- bad feeds: refused before anything is loaded or run ------------------------------------------------
BATCH = np.zeros((2, 3, 1024, 1024), np.float32)


@pytest.mark.parametrize("stage, feeds, message", [
    (ENCODER.name, {"image": BATCH}, r"expected inputs \['pixels'\]"),
    (ENCODER.name, {PIXELS: BATCH.astype(np.float16)}, "expected dtype float32, got float16"),
    (ENCODER.name, {PIXELS: BATCH[:, :1]}, r"expected shape \(batch in 1\.\.\d+, 3, 1024, 1024\)"),
    (FE.name, {IMAGE_EMBEDDINGS: np.zeros((2, 256, 64, 64), np.float32),
               INITIAL_POINT: np.zeros((2, 1, 2), np.float64)}, "expected dtype float32"),
    (SA.name, {POINT_COORDS: np.zeros((1, 5, 2), np.float32),
               POINT_LABELS: np.zeros((1, 6), np.float32)}, "axis 'num_points'"),
])
def test_bad_feeds_are_refused_before_any_engine_runs(built, machine, stage, feeds, message):
    fake = machine()
    runner = create_runner("tensorrt", ModelSpec(folder=built))
    with pytest.raises(S3potInputError, match=message):
        runner.infer(stage, feeds)
    assert not runner.is_active and fake.record.deserialized == [] and fake.record.executions == []


# -- the fake's runtime half behaves as TensorRT documents ----------------------------------------------
def test_the_fake_runtime_behaves_as_tensorrt_documents(built):
    """What the runner relies on, on the fake itself, with NumPy arrays as the bound memory."""
    import onnxruntime as ort

    trt = make_fake_tensorrt(TRT10)
    logger = trt.Logger(trt.Logger.WARNING)
    plan = engine_path(built, SA.name, "fp32").read_bytes()
    for other, reason in [(make_fake_tensorrt("10.16.1.2"), "expecting library version 10.16.1.2 "
                                                           "got 10.16.0.1"),
                          (make_fake_tensorrt(TRT10, compute_capability="8.6"),
                           "incompatible device, expecting compute 8.6 got compute 9.0")]:
        assert other.Runtime(logger).deserialize_cuda_engine(plan) is None
        assert reason in logger.messages[-1][1]
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == [POINT_COORDS, POINT_LABELS, SPARSE_PROMPTS]
    assert [engine.get_tensor_mode(n) for n in names] == [trt.TensorIOMode.INPUT] * 2 + [
        trt.TensorIOMode.OUTPUT]
    assert trt.nptype(engine.get_tensor_dtype(POINT_LABELS)) is np.float32
    assert tuple(engine.get_tensor_shape(POINT_COORDS)) == (1, -1, 2)
    assert [tuple(s) for s in engine.get_tensor_profile_shape(POINT_COORDS, 0)] == list(
        SA.profile()[POINT_COORDS])
    context = engine.create_execution_context()
    assert context.infer_shapes() == [POINT_COORDS, POINT_LABELS]
    assert not context.all_binding_shapes_specified
    assert not context.execute_async_v3(1)  # input shapes not set
    assert not context.set_input_shape(POINT_COORDS, (1, NUM_TOKENS + 1, 2))  # outside the profile
    assert context.set_input_shape(POINT_COORDS, (1, 5, 2))
    assert context.set_input_shape(POINT_LABELS, [1, 5])
    assert context.infer_shapes() == [] and context.all_binding_shapes_specified
    assert not context.execute_async_v3(1)  # no addresses bound
    rng = np.random.default_rng(0)
    feeds = {POINT_COORDS: rng.uniform(0, 1024, (1, 5, 2)).astype(np.float32),
             POINT_LABELS: np.array([[1, 0, 1, 0, 0]], np.float32)}
    out = np.zeros(tuple(context.get_tensor_shape(SPARSE_PROMPTS)), np.float32)
    for name, array in (*feeds.items(), (SPARSE_PROMPTS, out)):
        assert context.set_tensor_address(name, array.ctypes.data)
    assert context.execute_async_v3(7)
    want = ort.InferenceSession(str(built / "sa.onnx")).run(None, feeds)[0]
    np.testing.assert_array_equal(out, want)
    assert trt.record.executions[-1]["stream"] == 7 and trt.record.contexts == ["sa"]
    assert hasattr(trt.IExecutionContext, "all_shape_inputs_specified")
    assert not hasattr(make_fake_tensorrt("11.1.0.5").IExecutionContext,
                       "all_shape_inputs_specified")  # removed in 11.x


# -- no GPU packages needed to import ------------------------------------------------------------------
BLOCKED = ("tensorrt", "pycuda", "cuda", "torch")


def test_imports_without_gpu_packages_and_activate_names_the_install_command(built):
    code = f"""
import importlib, pkgutil, sys
BLOCKED = {BLOCKED!r}
def blocked(name):
    return name.split('.')[0] in BLOCKED or name == 'numba.cuda' or name.startswith('numba.cuda.')
class Block:
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f'blocked {{name}}', name=name)
sys.meta_path.insert(0, Block())
import s3pot.runtime.backends.tensorrt as pkg
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):
    importlib.import_module(info.name)
from s3pot.core.errors import MissingDependencyError
from s3pot.runtime.backends import ModelSpec, create_runner
runner = create_runner('tensorrt', ModelSpec(folder={str(built)!r}))
try:
    runner.activate()
except MissingDependencyError as exc:
    print(exc)
else:
    raise SystemExit('activated without tensorrt')
loaded = sorted(m for m in sys.modules if blocked(m))
assert not loaded, loaded
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"TensorRT is not installed: {INSTALL_HINT}" in proc.stdout


# -- the runner itself, under Numba's CUDA simulator -----------------------------------------------------
def test_the_runner_under_the_cuda_simulator():
    """Runs tensorrt_simulated_cases.py: parity with onnxruntime per stage and through the
    pipeline, device-side prompt selection, allocations, refusals, CUDA graphs."""
    pytest.importorskip("numba")
    pytest.importorskip("onnxruntime")
    run_under_cuda_simulator(CASES)


# -- real TensorRT on a real GPU -------------------------------------------------------------------------
def _tensorrt_and_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401  (first: no numba.cuda import on machines without it)
        import numba
        from numba import cuda
    except ImportError:
        return False
    return not numba.config.ENABLE_CUDASIM and cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _tensorrt_and_gpu(), reason="needs TensorRT and an NVIDIA GPU")
def test_real_engines_on_the_gpu(tmp_path):
    """Tiny export -> fp32 engines -> the runner, against the onnxruntime backend on the CPU.
    FP32 engines (TF32 off) differ from ONNX Runtime only in summation order: rel. L2 <= 1e-4."""
    from helpers import rel_l2
    from s3pot.export.folder import ExportRequest, export_folder
    from s3pot.kernels import select_prompts

    folder = tmp_path / "model"
    export_folder(ExportRequest(variant="tiny", random_weights=True), folder)
    build_engines(folder, precisions=["fp32"])
    reference = create_runner("onnxruntime", ModelSpec(folder=folder, device="cpu")).activate()
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((2, 3, 1024, 1024)).astype(np.float32)
    point = np.full((2, 1, 2), 520.0, np.float32)
    points = rng.uniform(0, 1024, (1, 300, 2)).astype(np.float32)
    labels = (rng.random((1, 300)) < 0.3).astype(np.float32)
    face_mask = np.zeros((64, 64), bool)
    face_mask[20:44, 18:46] = True
    with create_runner("tensorrt", ModelSpec(folder=folder)) as runner:
        z = runner.encode(pixels)
        assert rel_l2(z, reference.encode(pixels)) < 1e-4
        for _ in range(2):  # replays of the CUDA graph (with cuda-python) give the same result
            assert rel_l2(runner.encode(pixels), z) < 1e-6
        tokens = runner.enhance(z, point)
        assert rel_l2(tokens, reference.enhance(z, point)) < 1e-4
        prompts = runner.reweight(points, labels)
        assert rel_l2(prompts, reference.reweight(points, labels)) < 1e-4
        assert rel_l2(runner.decode(z[:1], prompts), reference.decode(z[:1], prompts)) < 1e-4
        on_device = runner.select(z, point, face_mask)  # the CUDA kernel on FE's buffer
        on_host = select_prompts(tokens[0], tokens[1], face_mask, "numba")
        face = np.flatnonzero(face_mask)
        assert np.array_equal(np.union1d(on_device.occlusion, on_device.face), face)
        # S is computed on the device up to float32 rounding: near-ties may pair differently
        assert np.setxor1d(on_device.occlusion, on_host.occlusion).size <= 0.02 * face.size
    reference.deactivate()


def test_cli_refuses_engines_of_another_tensorrt_in_one_line(built, machine, tmp_path, capsys):
    """`s3pot segment --backend tensorrt` on engines another TensorRT built: exit 2, one line
    naming both versions, nothing written."""
    from s3pot.runtime.cli import EXIT_USER_ERROR, main

    machine("10.16.1.2", GPU)
    data = ROOT / "benchmarks" / "data"
    out = tmp_path / "out"
    code = main(["segment", "--backend", "tensorrt", "--model", str(built), "--out", str(out),
                 "--image", str(data / "obama_face.jpg"), "--reference", str(data / "obama_face_ref.jpg"),
                 "--parsing", str(data / "obama_face_parsing_mask.npy")])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and not out.exists()
    assert err.count("\n") == 1 and err.startswith("s3pot: error: engine ")
    assert "TensorRT 10.16.0.1" in err and "10.16.1.2" in err


def test_doctor_judges_engines_against_this_machine(built, machine, capsys):
    from s3pot.runtime.cli import main

    machine(TRT10, GPU)
    assert main(["doctor", "--model", str(built)]) == 0
    table = capsys.readouterr().out
    assert "TensorRT       ok    10.16.0.1" in table
    assert "engines fp32   ok    four engines built for this TensorRT and GPU" in table
    machine("10.16.1.2", GPU)
    main(["doctor", "--model", str(built)])
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("engines fp32"))
    assert " no " in row and "TensorRT 10.16.0.1" in row and "10.16.1.2" in row
