"""`s3pot bench` on the tiny variant, as CI runs it, and the pieces it is made of.

Timings are never asserted: only that every path and stage is measured and reported, that the
baseline gives the pipeline's prompts, and that bad input gets one clear error.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import TINY_EXPORT_SEED
from s3pot.benchmarks.baseline import STAGE_KEYS, authors_greedy
from s3pot.benchmarks.bench import BenchPath, select_paths, summary
from s3pot.runtime.metrics import score
from s3pot.benchmarks.report import compare, header_lines, headline_lines, load_report, markdown
from s3pot.core.errors import S3potInputError
from s3pot.kernels import greedy_match
from s3pot.runtime.cli import main


@pytest.fixture(scope="module")
def tiny_bench(tiny_export_dir, tmp_path_factory):
    """`s3pot bench --variant tiny --runs 3 --json FILE --interleave` on the shared tiny export
    (the default order, one path after another, is tested below)."""
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--variant", "tiny", "--runs", "3", "--json", str(out / "copy.json"),
                 "--model", str(tiny_export_dir), "--seed", str(TINY_EXPORT_SEED),
                 "--out", str(out), "--interleave"])
    return code, out


def test_tiny_bench_fills_every_stage_of_every_path(tiny_bench):
    code, out = tiny_bench
    assert code == 0
    report = json.loads((out / "copy.json").read_text())
    assert report == json.loads((out / "bench.json").read_text())
    names = [p["name"] for p in report["paths"]]
    assert names[0] == "baseline" and "onnxruntime fp32" in names
    assert "torch fp32" not in names and "torch bf16" not in names  # on request only on a CPU
    for path in report["paths"]:
        assert path["status"] == "ok", path
        for stage in STAGE_KEYS:
            stats = path["stages"][stage]
            assert stats["n"] == 3 and 0 < stats["median"] <= stats["p90"] <= stats["p99"], (path["name"], stage)
        assert path["total"]["median"] > path["stages"]["encoder"]["median"]
        assert path["peak_host_bytes"] > 100e6 and path["speedup"] > 0
        assert path["floor"]["encoder"]["ratio"] > 0
    for path in report["paths"][1:]:
        assert path["video_total"]["n"] == 3 and path["video_cache_hits"] == 3
        assert set(path["accuracy"]["stage_rel_error"]) == {"encoder", "fe", "sa", "decoder"}
    fp32 = [p for p in report["paths"] if p["precision"] == "fp32"]
    for path in fp32:  # the baseline gives the pipeline's prompts, and the same mask
        assert path["accuracy"]["prompts_equal"] and path["accuracy"]["mask_iou"] > 0.999, path["name"]
        assert max(path["accuracy"]["stage_rel_error"].values() or [0]) < 1e-3, path["name"]
    assert all(report["checks"]["fp32_prompts_equal_baseline"].values())
    assert all(report["checks"]["fp32_stage_error_ok"].values())
    assert report["weights"]["kind"] == "random" and "random weights" in report["weights"]["label"]
    assert report["floor"]["flops"]["encoder"] > 1e9 and report["floor"]["rates"]
    assert report["environment"]["cores"] >= 1 and report["environment"]["versions"]["numpy"]
    int8 = [p for p in report["paths"] if p["name"] == "openvino int8"]
    for path in int8:  # the INT8 encoder's floor: its attention at the floating-point rate
        assert path["gemm"]["float_gflops"] > 0 and path["floor"]["encoder"]["seconds"] > 0
        assert report["int8_encoder"]["check"]["rel_l2"] <= report["int8_encoder"]["check"]["tolerance"]
    assert report["floor"]["encoder_attention_flops"] > 0
    baseline = report["paths"][0]  # the official encoder, with the repository's own timed beside it
    assert baseline["encoder_source"] == "segment-anything" and baseline["own_encoder_s"] > 0
    for path in report["paths"]:  # minor page faults of every timed sample, counted in its process
        assert len(path["page_faults"]) == 3 and all(n >= 0 for n in path["page_faults"])
        assert path["page_faults_median"] == float(np.median(path["page_faults"]))
        assert "MALLOC_MMAP_MAX_" not in path["allocator_env"]
    assert report["malloc"]["mode"] == "system"


def test_tiny_bench_interleaves_the_paths_samples(tiny_bench):
    """Round k runs sample k of every path in turn: each path's k-th sample starts after the
    previous path's k-th and before the first path's (k+1)-th."""
    _, out = tiny_bench
    report = json.loads((out / "bench.json").read_text())
    assert report["order"].startswith("interleaved") and "idle 0.3 s after its sample" in report["order"]
    started = np.array([path["started"] for path in report["paths"]])  # paths x runs
    assert started.shape == (len(report["paths"]), 3)
    in_turn = started.T.ravel()  # round 1's paths, round 2's ...
    assert np.all(np.diff(in_turn) > 0), started


def test_sequential_bench_reports_a_failed_path_and_runs_the_others(tiny_export_dir, tmp_path,
                                                                    monkeypatch):
    """By default the paths run one after another. A path whose process fails (here OpenVINO
    asked for FP16, which it refuses while building) is reported failed with its error; the
    baseline and the other paths finish."""
    pytest.importorskip("openvino")
    from s3pot.benchmarks import bench

    monkeypatch.setattr(bench, "available_paths", lambda gpu, folder=None: [
        BenchPath("authors", "fp32", "cpu"), BenchPath("openvino", "fp16", "cpu"),
        BenchPath("onnxruntime", "fp32", "cpu")])
    code = main(["bench", "--variant", "tiny", "--runs", "2", "--warmup", "0", "--video-runs",
                 "1", "--no-floor", "--model", str(tiny_export_dir), "--seed",
                 str(TINY_EXPORT_SEED), "--out", str(tmp_path), "--malloc", "keep"])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert code == 0 and report["order"].startswith("sequential")
    keep = bench.MALLOC["keep"]["env"]  # every path's process ran with glibc keeping freed memory
    assert report["malloc"]["mode"] == "keep" and report["malloc"]["env"] == keep
    assert all(p["allocator_env"].items() >= keep.items() for p in report["paths"] if p["status"] == "ok")
    assert "Memory allocator: glibc keeps freed memory" in (tmp_path / "bench.md").read_text()
    status = {path["name"]: path["status"] for path in report["paths"]}
    assert status == {"baseline": "ok", "openvino fp16": "failed", "onnxruntime fp32": "ok"}
    failed = report["paths"][1]
    assert "expected precision" in failed["error"] and "fp16" in failed["error"]
    assert "| openvino fp16 | failed" in (tmp_path / "bench.md").read_text()
    baseline, onnxruntime = report["paths"][0]["started"], report["paths"][2]["started"]
    assert baseline[0] < baseline[1] < onnxruntime[0] < onnxruntime[1]
    assert report["paths"][2]["accuracy"]["prompts_equal"]


def test_tiny_bench_writes_markdown_and_chart(tiny_bench):
    _, out = tiny_bench
    text = (out / "bench.md").read_text()
    assert "| baseline |" in text and "Stage medians" in text and "The floor" in text
    pytest.importorskip("matplotlib")
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_reports_the_change_per_path_and_stage(tiny_bench, capsys):
    _, out = tiny_bench
    report = load_report(out / "bench.json")
    lines = compare(report, report)
    assert any(line.startswith("| onnxruntime fp32 |") and "(1.00x)" in line for line in lines)
    older = json.loads(json.dumps(report))
    older["paths"] = [p for p in older["paths"] if p["name"] != "onnxruntime fp32"]
    older["paths"][0]["total"]["median"] *= 2
    lines = compare(report, older)
    baseline = next(line for line in lines if line.startswith("| baseline |"))
    assert "(0.50x)" in baseline and not any(line.startswith("| onnxruntime fp32 |") for line in lines)
    assert "| baseline |" in markdown(report)


def test_compare_says_when_the_allocators_differ(tiny_bench):
    _, out = tiny_bench
    report = load_report(out / "bench.json")
    older = json.loads(json.dumps(report))
    assert not any("allocator" in line for line in compare(report, older))
    older["malloc"] = {"mode": "keep", "label": "glibc keeps freed memory"}
    assert any("--malloc keep before, system now" in line for line in compare(report, older))


def test_headline_names_the_baselines_page_faults_under_the_system_allocator(tiny_bench):
    _, out = tiny_bench
    report = load_report(out / "bench.json")
    report["paths"][0]["page_faults_median"] = 4.2e6
    said = [line for line in headline_lines(report) if "page faults per sample" in line]
    assert len(said) == 1 and "4.20 M" in said[0] and "--malloc keep" in said[0]
    report["malloc"] = {"mode": "keep", "label": "glibc keeps freed memory"}
    assert not any("page faults per sample" in line for line in headline_lines(report))


def test_allocator_settings_from_the_environment_are_named(tiny_bench):
    _, out = tiny_bench
    report = load_report(out / "bench.json")
    report["paths"][0]["allocator_env"] = {"LD_PRELOAD": "libjemalloc.so.2"}
    assert "also set LD_PRELOAD=libjemalloc.so.2" in header_lines(report)[-1]


def test_keep_allocator_needs_glibc(monkeypatch):
    from s3pot.benchmarks import bench

    with pytest.raises(S3potInputError, match="expected one of system, keep"):
        bench.check_malloc("jemalloc")
    monkeypatch.setattr(bench.platform, "libc_ver", lambda: ("", ""))
    with pytest.raises(S3potInputError, match="--malloc keep: expected glibc"):
        bench.check_malloc("keep")
    bench.check_malloc("system")


@pytest.mark.parametrize("content, expected", [
    (None, "could not read it"),
    ("{not json", "invalid JSON"),
    ('{"benchmark": "greedy"}', "got another file"),
])
def test_compare_with_a_bad_file_is_one_clear_error(tmp_path, capsys, content, expected):
    old = tmp_path / "old.json"
    if content is not None:
        old.write_text(content)
    assert main(["bench", "--variant", "tiny", "--compare", str(old), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and str(old) in err
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_export_of_other_weights_is_refused(tiny_export_dir, tmp_path, capsys):
    code = main(["bench", "--variant", "tiny", "--model", str(tiny_export_dir), "--seed", "0",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"random weights (seed {TINY_EXPORT_SEED})" in err and "(seed 0)" in err


def test_unknown_backend_and_empty_selection_are_refused():
    paths = [BenchPath("authors", "fp32", "cpu"), BenchPath("onnxruntime", "fp32", "cpu")]
    with pytest.raises(S3potInputError, match="expected some of"):
        select_paths(paths, ("tensorrtx",), ())
    with pytest.raises(S3potInputError, match="nothing on this machine matches"):
        select_paths(paths, ("onnxruntime",), ("bf16",))
    assert [p.name for p in select_paths(paths, ("onnxruntime",), ())] == ["baseline", "onnxruntime fp32"]
    paths.append(BenchPath("torch", "fp32", "cpu"))
    assert [p.name for p in select_paths(paths, (), ())] == ["baseline", "onnxruntime fp32"]
    assert [p.name for p in select_paths(paths, ("torch",), ())] == ["baseline", "torch fp32"]


def test_gpu_paths_need_the_libraries_that_run_them(monkeypatch):
    """On a GPU machine with the CPU onnxruntime wheel (no CUDA provider) and no TensorRT, as the
    lent H100 has, only the PyTorch paths are listed: no path that could only fail."""
    from s3pot.benchmarks import bench

    monkeypatch.setattr(bench, "installed", lambda module: module in ("onnxruntime", "torch"))
    monkeypatch.setattr(bench, "onnxruntime_cuda", lambda: False)
    assert [p.name for p in bench.available_paths(gpu=True)] == ["baseline", "torch fp32", "torch fp16"]
    monkeypatch.setattr(bench, "onnxruntime_cuda", lambda: True)
    assert [p.name for p in bench.available_paths(gpu=True)][3:] == ["onnxruntime fp32", "onnxruntime fp16"]


def test_torch_only_bench_exports_nothing(tmp_path):
    """PyTorch paths alone need no ONNX graphs: no export folder is made, the run still reports."""
    code = main(["bench", "--variant", "tiny", "--backends", "torch", "--precisions", "fp32",
                 "--runs", "1", "--warmup", "0", "--video-runs", "1", "--no-floor", "--device", "cpu",
                 "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert code == 0 and not (tmp_path / "export-tiny").exists()
    assert [p["name"] for p in report["paths"]] == ["baseline", "torch fp32"]
    assert report["paths"][1]["accuracy"]["prompts_equal"]


@pytest.mark.parametrize("ties", [False, True])
def test_authors_greedy_is_spec_matching_bit_for_bit(ties):
    rng = np.random.default_rng(5)
    sim = rng.integers(0, 3, (40, 90)) if ties else rng.standard_normal((40, 90))
    sim = sim.astype(np.float32)  # three values: almost every comparison a tie (SPEC's order)
    np.testing.assert_array_equal(authors_greedy(sim), greedy_match(sim))


def test_summary_and_mask_iou():
    def mask_iou(a, b):  # what the bench's accuracy column computes
        return score("x", a, b).iou

    stats = summary([3.0, 1.0, 2.0, 4.0])
    assert stats["median"] == 2.5 and stats["min"] == 1.0 and stats["n"] == 4
    assert stats["p90"] == pytest.approx(3.7) and stats["p99"] == pytest.approx(3.97)
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0  # nothing to find, nothing found
    a[0, :2] = b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)


def test_gpu_run_script_says_when_there_is_no_gpu(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine runs the script for real")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_run.sh"
    proc = subprocess.run(["bash", str(script), str(tmp_path / "gpu")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "no NVIDIA GPU answers nvidia-smi" in proc.stderr


@pytest.mark.parametrize("variant, encoder_module", [
    ("tiny", "segment_anything.modeling.image_encoder"),
    ("tiny_mobile", "s3pot.models.tiny_vit"),  # MobileSAM's own code is not packaged
])
def test_baseline_runs_the_official_sam_modules(variant, encoder_module):
    """The authors' code runs segment-anything's modules: the baseline does too, with the model's
    weights, and every stage gives what S3POT's own stage gives on the same inputs (relative L2
    < 1e-5); on ``tiny`` the whole sample gives the model's own prompts and logits. (Random
    ``tiny_mobile`` weights make near-identical tokens, so its initial prompt is a tie.)"""
    import torch

    from s3pot.benchmarks.baseline import AuthorsPipeline
    from s3pot.benchmarks.bench import DATA, SAMPLE
    from s3pot.core.io_table import (DECODER, ENCODER, FE, IMAGE_EMBEDDINGS, INITIAL_POINT, PIXELS,
                                     POINT_COORDS, POINT_LABELS, SA, SPARSE_PROMPTS)
    from s3pot.export.onnx_export import rel_l2
    from s3pot.models import build_s3pot
    from s3pot.runtime.preprocess import prepare_inputs

    model = build_s3pot(variant, random_weights=True, seed=4)
    pipeline = AuthorsPipeline(model, variant)
    sam = pipeline.sam
    assert type(sam.image_encoder).__module__ == encoder_module
    for part in (sam.prompt_encoder, sam.mask_decoder, sam.fe_transformer):
        assert type(part).__module__.startswith("segment_anything.modeling.")
    prepared = prepare_inputs(*(str(DATA / name) for name in SAMPLE))
    got = pipeline.segment(prepared, record=True)
    io = {stage: ({k: torch.from_numpy(v) for k, v in feeds.items()}, out)
          for stage, (feeds, out) in got.stage_io.items()}
    with torch.inference_mode():
        own = {ENCODER.name: model.encode(io[ENCODER.name][0][PIXELS]),
               FE.name: model.enhance(io[FE.name][0][IMAGE_EMBEDDINGS], io[FE.name][0][INITIAL_POINT]),
               SA.name: model.reweight(io[SA.name][0][POINT_COORDS], io[SA.name][0][POINT_LABELS]),
               DECODER.name: model.decode(io[DECODER.name][0][IMAGE_EMBEDDINGS],
                                          io[DECODER.name][0][SPARSE_PROMPTS])}
        for stage, value in own.items():
            assert rel_l2(value.numpy(), io[stage][1]) < 1e-5, stage
        if variant == "tiny":
            want = model(torch.from_numpy(prepared.pixels), prepared.face_mask)
            assert got.initial_token == want.initial_token
            assert np.array_equal(got.occlusion_tokens, want.occlusion_tokens)
            assert np.array_equal(got.face_tokens, want.face_tokens)
            assert rel_l2(got.low_res_logits, want.low_res_logits[0, 0].numpy()) < 1e-5


def test_cuda_event_timer_times_each_stage_per_sample():
    """The device clock's plumbing, with a stand-in for ``torch.cuda.Event`` (the real one runs in
    the ``gpu`` test below): off, it only passes calls through; on, each call is bracketed and a
    sample's calls of one stage are summed."""
    from types import SimpleNamespace

    from s3pot.benchmarks.child import CudaEventTimer
    from s3pot.benchmarks.report import device_table

    clock = iter(range(100))

    class Event:
        def __init__(self, enable_timing):
            assert enable_timing

        def record(self):
            self.t = next(clock)

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return float(end.t - self.t)

    torch = SimpleNamespace(cuda=SimpleNamespace(Event=Event))
    runner = SimpleNamespace(infer=lambda stage, feeds: {"out": feeds})
    timer = CudaEventTimer(runner, torch)
    assert runner.infer("encoder", 1) == {"out": 1} and timer.times == {}
    timer.on = True
    for _ in range(2):  # two samples: the encoder twice each (image, reference), the decoder once
        runner.infer("encoder", 0), runner.infer("encoder", 0), runner.infer("decoder", 0)
    assert timer.medians(2) == {"encoder": 2.0, "decoder": 1.0}
    report = {"paths": [{"name": "torch fp16", "status": "ok", "device_stage_ms": {"encoder": 2.0}}]}
    assert device_table(report)[2] == "| torch fp16 | 2.0 ms |"


@pytest.mark.gpu
def test_bench_times_torch_cuda_stages_with_cuda_events(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    code = main(["bench", "--variant", "tiny", "--backends", "torch", "--runs", "2", "--warmup", "1",
                 "--video-runs", "1", "--no-floor", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert code == 0
    for path in report["paths"][1:]:
        device = path["device_stage_ms"]
        assert set(device) == {"encoder", "fe", "sa", "decoder"} and min(device.values()) > 0
        assert device["encoder"] / 1e3 <= path["stages"]["encoder"]["median"] * 1.05
    assert "Device time per stage" in (tmp_path / "bench.md").read_text()
