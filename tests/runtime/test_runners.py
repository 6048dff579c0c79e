"""The runners and the pipeline over them: ONNX Runtime against PyTorch, the reference cache,
batches of faces, threads, the optimised-graph cache, and bad export folders."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from helpers import astronaut_sample, rel_l2
from s3pot.core.errors import ExportError, S3potInputError
from s3pot.core.io_table import ENCODER, FE, PIXELS, SA
from s3pot.core.manifest import MANIFEST_NAME
from s3pot.runtime.backends import ModelSpec, create_runner
from s3pot.runtime.backends.torch import TorchRunner
from s3pot.runtime.pipeline import Pipeline

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
OBAMA = (DATA / "obama_face.jpg", DATA / "obama_face_ref.jpg", DATA / "obama_face_parsing_mask.npy")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def ort_pipeline(tiny_export_dir):
    with Pipeline(create_runner("onnxruntime", ModelSpec(folder=tiny_export_dir, device="cpu"))) as p:
        yield p


@pytest.fixture(scope="module")
def torch_pipeline(tiny_torch_model):
    return Pipeline(TorchRunner(tiny_torch_model, device="cpu"))


@pytest.mark.parametrize("sample", ["obama", "astronaut"])
def test_onnxruntime_matches_torch(ort_pipeline, torch_pipeline, sample):
    inputs = OBAMA if sample == "obama" else astronaut_sample()
    got, want = ort_pipeline.segment(*inputs), torch_pipeline.segment(*inputs)
    assert got.initial_token == want.initial_token
    assert np.array_equal(got.occlusion_tokens, want.occlusion_tokens)
    assert np.array_equal(got.face_tokens, want.face_tokens)
    assert iou(got.occlusion, want.occlusion) >= 0.999


def test_runner_reports_what_it_runs_on(ort_pipeline, tiny_export_dir):
    info = ort_pipeline.runner.info
    assert (info.backend, info.device, info.provider, info.precision) == (
        "onnxruntime", "cpu", "CPUExecutionProvider", "fp32")
    assert info.source == str(tiny_export_dir)
    assert ort_pipeline.runner.context.variant == "tiny"


def test_runner_checks_feeds_against_the_io_table(ort_pipeline):
    runner = ort_pipeline.runner
    with pytest.raises(S3potInputError, match=r"expected inputs \['pixels'\]"):
        runner.infer(ENCODER.name, {"image": np.zeros((1, 3, 1024, 1024), np.float32)})
    with pytest.raises(S3potInputError, match="float32"):
        runner.infer(ENCODER.name, {PIXELS: np.zeros((1, 3, 1024, 1024), np.float64)})
    with pytest.raises(S3potInputError, match="1024"):
        runner.infer(ENCODER.name, {PIXELS: np.zeros((1, 3, 512, 512), np.float32)})
    with pytest.raises(S3potInputError, match="batch"):
        runner.infer(ENCODER.name, {PIXELS: np.zeros((9, 3, 1024, 1024), np.float32)})
    with pytest.raises(S3potInputError):
        runner.infer(FE.name, {n: np.zeros((3, 256, 64, 64), np.float32) for n in FE.input_names})
    with pytest.raises(S3potInputError, match="stage 'nope'"):
        runner.infer("nope", {})
    assert runner.infer(SA.name, {n: np.zeros((1, 5, 2) if i == 0 else (1, 5), np.float32)
                                  for i, n in enumerate(SA.input_names)})


def test_runner_is_a_context_manager(tiny_export_dir):
    runner = create_runner("onnxruntime", ModelSpec(folder=tiny_export_dir, device="cpu"))
    assert not runner.is_active and "not activated" in runner.describe()
    with runner:
        assert runner.is_active and runner.sessions
    assert not runner.is_active and not runner.sessions


def test_reference_cache_encodes_a_fixed_reference_once(tiny_export_dir, ort_pipeline):
    """A video of one person: the reference is encoded once over the frames; results equal the
    uncached pipeline's."""
    image, reference, parsing = astronaut_sample()
    frames = [np.roll(image, shift, axis=1) for shift in (0, 8, 16, 24)]
    cached = Pipeline(create_runner("onnxruntime", ModelSpec(folder=tiny_export_dir, device="cpu")))
    uncached = Pipeline(ort_pipeline.runner, reference_cache=0)
    for frame in frames:
        a, b = cached.segment(frame, reference, parsing), uncached.segment(frame, reference, parsing)
        assert np.array_equal(a.logits, b.logits)
        assert np.array_equal(a.occlusion_tokens, b.occlusion_tokens)
    assert cached.stats.references_encoded == 1 and cached.stats.reference_cache_hits == 3
    assert cached.stats.images_encoded == 4
    assert uncached.stats.references_encoded == 4 and uncached.stats.reference_cache_hits == 0


def test_segment_batch_equals_separate_calls(ort_pipeline):
    astro = astronaut_sample()
    samples = [OBAMA, astro, OBAMA, (np.flip(astro[0], 1).copy(), astro[1], astro[2]), OBAMA]
    fresh = Pipeline(ort_pipeline.runner)
    batch = fresh.segment_batch(samples)
    assert fresh.stats.references_encoded == 2  # two distinct references in the batch
    assert fresh.stats.encoder_calls == 1  # 5 images + 2 references <= the maximum batch of 8
    for seg, sample in zip(batch, samples):
        one = Pipeline(ort_pipeline.runner, reference_cache=0).segment(*sample)
        assert np.array_equal(seg.logits, one.logits)
        assert np.array_equal(seg.face_tokens, one.face_tokens)


def test_four_threads_give_the_single_thread_results(ort_pipeline, torch_pipeline):
    image, reference, parsing = astronaut_sample()
    inputs = [(np.roll(image, 8 * k, axis=0), reference, parsing) for k in range(4)]
    for pipeline in (ort_pipeline, torch_pipeline):
        want = [pipeline.segment(*sample).logits for sample in inputs]
        got: dict = {}
        errors = []

        def work(k):
            try:
                for _ in range(2):
                    got[k] = pipeline.segment(*inputs[k]).logits
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for k in range(4):
            assert np.array_equal(got[k], want[k])


def test_optimised_graphs_are_saved_once_and_reused(tiny_export_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_export_dir, folder, ignore=shutil.ignore_patterns(".onnxruntime"))
    spec = ModelSpec(folder=folder, device="cpu")
    first = create_runner("onnxruntime", spec).activate()
    cached = sorted(p.name for p in (folder / ".onnxruntime").iterdir())
    assert len(cached) == 4 and all(name.split(".")[1] == "fp32" for name in cached)
    stamps = {p: p.stat().st_mtime_ns for p in (folder / ".onnxruntime").rglob("*.onnx")}
    second = create_runner("onnxruntime", spec).activate()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # loaded, not rewritten
    pixels = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    assert np.array_equal(first.encode(pixels), second.encode(pixels))
    # a damaged entry is rebuilt, never trusted
    victim = next(iter(stamps))
    victim.write_bytes(b"not a graph")
    third = create_runner("onnxruntime", spec).activate()
    assert np.array_equal(third.encode(pixels), first.encode(pixels))
    assert victim.read_bytes() != b"not a graph"


def test_read_only_export_folder_caches_in_the_user_cache(tiny_export_dir, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(tiny_export_dir, folder, ignore=shutil.ignore_patterns(".onnxruntime"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from s3pot.core import machine  # where the cache folders' writability is checked

    real_check = machine.write_error  # chmod does not stop root, so the check itself answers "no"
    monkeypatch.setattr(machine, "write_error", lambda path: "Read-only file system" if str(
        path).startswith(str(folder)) else real_check(path))
    (folder / ".onnxruntime").mkdir()
    create_runner("onnxruntime", ModelSpec(folder=folder, device="cpu")).activate()
    assert not any((folder / ".onnxruntime").iterdir())
    assert len(list((tmp_path / "cache" / "s3pot" / "onnxruntime").iterdir())) == 4


@pytest.fixture
def broken(tiny_export_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_export_dir, folder, ignore=shutil.ignore_patterns(".onnxruntime"))
    return folder


def test_export_folder_with_a_missing_graph_is_refused(broken):
    (broken / "fe.onnx").unlink()
    with pytest.raises(ExportError, match=r"expected fe\.onnx .*got no such file"):
        create_runner("onnxruntime", ModelSpec(folder=broken))


def test_graph_whose_hash_differs_is_refused(broken):
    with open(broken / "sa.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ExportError, match=r"sa\.onnx': expected sha256"):
        create_runner("onnxruntime", ModelSpec(folder=broken))


def test_manifest_of_another_variant_is_refused(broken):
    with pytest.raises(ExportError, match="expected variant 'vit_b', got 'tiny'"):
        create_runner("onnxruntime", ModelSpec(folder=broken, variant="vit_b"))
    (broken / MANIFEST_NAME).write_text("{\"format\": \"something else\"}")
    with pytest.raises(ExportError, match="expected format 's3pot-export'"):
        create_runner("onnxruntime", ModelSpec(folder=broken))


def test_fp16_graphs_run_and_bf16_is_refused(tiny_export_dir, ort_pipeline):
    fp16 = Pipeline(create_runner("onnxruntime", ModelSpec(folder=tiny_export_dir, precision="fp16",
                                                           device="cpu")))
    assert fp16.runner.info.precision == "fp16"
    got, want = fp16.segment(*OBAMA), ort_pipeline.segment(*OBAMA)
    assert np.isfinite(got.logits).all() and iou(got.occlusion, want.occlusion) > 0.99
    with pytest.raises(S3potInputError, match="expected precision fp32 or fp16"):
        create_runner("onnxruntime", ModelSpec(folder=tiny_export_dir, precision="bf16"))


def test_torch_bf16_autocast_on_the_cpu(tiny_torch_model, torch_pipeline):
    runner = TorchRunner(tiny_torch_model, device="cpu", precision="bf16")
    seg = Pipeline(runner).segment(*OBAMA)
    assert runner.info.provider == "eager, autocast bf16"
    assert np.isfinite(seg.logits).all()
    assert iou(seg.occlusion, torch_pipeline.segment(*OBAMA).occlusion) > 0.9
    with pytest.raises(S3potInputError, match="fp16 runs on CUDA only"):
        TorchRunner(tiny_torch_model, device="cpu", precision="fp16")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_selects_prompts_on_the_device(tiny_torch_model, precision):
    """FE's tokens stay on the GPU for the CUDA kernels: the same prompts as the CPU kernel on the
    same tokens copied to the host, and the same segmentation as with selector 'numba'."""
    from s3pot.kernels import select_prompts

    runner = TorchRunner(tiny_torch_model, device="cuda", precision=precision).activate()
    z = runner.encode(np.random.default_rng(3).standard_normal((2, 3, 1024, 1024), np.float32))
    point = np.full((2, 1, 2), 520.0, np.float32)
    face_mask = np.zeros((64, 64), bool)
    face_mask[16:48, 20:44] = True
    timings = {}
    got = runner.select(z, point, face_mask, "auto", timings)
    tokens = runner.enhance(z, point)
    want = select_prompts(tokens[0], tokens[1], face_mask, "numba")
    assert runner._cuda_kernels and set(timings) == {"fe", "prompt_selection"}
    np.testing.assert_array_equal(got.occlusion, want.occlusion)
    np.testing.assert_array_equal(got.face, want.face)
    on_gpu, on_cpu = Pipeline(runner).segment(*OBAMA), Pipeline(runner, selector="numba").segment(*OBAMA)
    np.testing.assert_array_equal(on_gpu.occlusion_tokens, on_cpu.occlusion_tokens)
    np.testing.assert_array_equal(on_gpu.occlusion, on_cpu.occlusion)


@pytest.mark.gpu
def test_torch_fp32_on_cuda_is_not_tf32(tiny_torch_model):
    """FP32 means FP32 on the GPU too: with TF32 forced on around it, the runner's encoder still
    equals a TF32-free eager run to FP32 rounding, and the process's flags come back as they were."""
    import torch

    pixels = np.random.default_rng(4).standard_normal((1, 3, 1024, 1024), np.float32)
    runner = TorchRunner(tiny_torch_model, device="cuda", cuda_graphs=False).activate()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    strict = runner.encode(pixels)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        assert rel_l2(runner.encode(pixels), strict) < 1e-5
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


def test_auto_chooses_and_says_why(tiny_export_dir):
    from s3pot.runtime.backends.auto import choose

    assert choose(ModelSpec())[0] == "torch"
    name, why = choose(ModelSpec(folder=tiny_export_dir, device="cpu"))
    assert name == "onnxruntime" and "no fp32 engines" in why


@pytest.mark.gpu
def test_torch_fp16_cuda_graphs_match_eager(tiny_torch_model):
    graphed = TorchRunner(tiny_torch_model, device="cuda", precision="fp16")
    eager = TorchRunner(tiny_torch_model, device="cuda", precision="fp16", cuda_graphs=False)
    a, b = Pipeline(graphed).segment(*OBAMA), Pipeline(eager).segment(*OBAMA)
    assert "CUDA graphs" in graphed.info.provider and len(graphed.graphs) == 2
    assert np.allclose(a.logits, b.logits, atol=1e-2) and iou(a.occlusion, b.occlusion) > 0.999


def test_cpu_encoder_runs_one_image_at_a_time_with_the_batch_results(tiny_export_dir, ort_pipeline):
    """Memory: the CPU runner feeds the encoder one image at a time (ViT-B: 3.1 GB instead of 6.0
    GB at batch 2); the outputs equal one batched run bit for bit."""
    from s3pot.runtime.backends.onnxruntime import OnnxRuntimeRunner, load_export

    batched = OnnxRuntimeRunner(load_export(tiny_export_dir), device="cpu", cpu_encoder_batch=8)
    calls = []
    runner = ort_pipeline.runner
    pixels = np.random.default_rng(1).standard_normal((3, 3, 1024, 1024)).astype(np.float32)
    original = runner._run
    runner._run = lambda stage, feeds: calls.append(len(feeds[PIXELS])) or original(stage, feeds)
    try:
        one_by_one = runner.encode(pixels)
    finally:
        del runner._run
    assert calls == [1, 1, 1]
    assert np.array_equal(one_by_one, batched.activate().encode(pixels))


def test_a_closed_pipeline_refuses_to_run(tiny_export_dir):
    from s3pot.core.errors import S3potError

    with Pipeline(create_runner("onnxruntime", ModelSpec(folder=tiny_export_dir, device="cpu"))) as p:
        p.segment(*OBAMA)
    assert not p.runner.is_active
    with pytest.raises(S3potError, match="pipeline: closed"):
        p.segment(*OBAMA)
