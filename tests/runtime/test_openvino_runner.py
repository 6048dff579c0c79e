"""The OpenVINO backend on the tiny export: the same outputs as ONNX Runtime on the same graphs
in FP32, BF16 only where the CPU runs it and only when asked for, and clear refusals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import rel_l2
from s3pot.core.errors import S3potInputError
from s3pot.core.io_table import PIXELS
from s3pot.export.onnx_export import sample_feeds
from s3pot.runtime.backends import ModelSpec, create_runner
from s3pot.runtime.pipeline import Pipeline

pytest.importorskip("openvino")

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
OBAMA = (DATA / "obama_face.jpg", DATA / "obama_face_ref.jpg", DATA / "obama_face_parsing_mask.npy")


@pytest.fixture(scope="module")
def runners(tiny_export_dir):
    ov = create_runner("openvino", ModelSpec(folder=tiny_export_dir))
    ort = create_runner("onnxruntime", ModelSpec(folder=tiny_export_dir, device="cpu"))
    with ov, ort:
        yield ov, ort


@pytest.mark.parametrize("stage", ["encoder", "fe", "sa", "decoder"])
def test_fp32_stages_match_onnxruntime(runners, stage):
    ov, ort = runners
    feeds = sample_feeds(stage, "opt", sizes={"batch": 1, "num_points": 37})
    got, want = ov.infer(stage, feeds), ort.infer(stage, feeds)
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        assert rel_l2(got[name], want[name]) < 1e-4, (stage, name)


def test_fp32_pipeline_gives_onnxruntime_prompts(runners):
    ov, ort = runners
    got, want = Pipeline(ov).segment(*OBAMA), Pipeline(ort).segment(*OBAMA)
    assert got.initial_token == want.initial_token
    assert np.array_equal(got.occlusion_tokens, want.occlusion_tokens)
    assert np.array_equal(got.face_tokens, want.face_tokens)


def test_runner_reports_precision_and_caches_compiled_models(runners, tiny_export_dir):
    info = runners[0].info
    assert (info.backend, info.device, info.precision, info.provider) == ("openvino", "cpu", "fp32", "CPU (f32)")
    assert any((tiny_export_dir / ".openvino").iterdir())


def test_bf16_where_the_cpu_runs_it(tiny_export_dir):
    from s3pot.runtime.backends.openvino import cpu_precisions

    if "bf16" not in cpu_precisions():
        pytest.skip("this CPU has no AVX512-BF16 / AMX")
    feeds = sample_feeds("encoder", "opt", sizes={"batch": 1})
    with create_runner("openvino", ModelSpec(folder=tiny_export_dir, precision="bf16")) as bf16, \
            create_runner("openvino", ModelSpec(folder=tiny_export_dir)) as fp32:
        assert bf16.info.provider == "CPU (bf16)"
        error = rel_l2(bf16.encode(feeds[PIXELS]), fp32.encode(feeds[PIXELS]))
    assert 1e-5 < error < 0.05  # reduced precision: really reduced, still close


def test_bf16_on_a_cpu_without_it_is_refused(tiny_export_dir, monkeypatch):
    from s3pot.runtime.backends.openvino import loader

    monkeypatch.setattr(loader, "cpu_precisions", lambda core=None: ["fp32"])
    runner = create_runner("openvino", ModelSpec(folder=tiny_export_dir, precision="bf16"))
    with pytest.raises(S3potInputError, match="needs a CPU with AVX512-BF16 or AMX"):
        runner.activate()


@pytest.mark.parametrize("field, value, message", [
    ("precision", "fp16", "expected precision fp32, bf16, int8"),
    ("device", "cuda", "runs on the CPU"),
    ("folder", None, "expected an export folder"),
])
def test_bad_requests_are_refused(tiny_export_dir, field, value, message):
    spec = {"folder": tiny_export_dir, field: value}
    with pytest.raises(S3potInputError, match=message):
        create_runner("openvino", ModelSpec(**spec))


def test_encoder_compiled_for_one_image_gives_the_dynamic_graphs_bits(tiny_export_dir):
    """The runner compiles the encoder with its batch fixed at one image (memory planned once);
    that changes no bit of the output."""
    import openvino as ov

    from s3pot.runtime.backends.export_folder import load_export
    from s3pot.runtime.backends.openvino import compile_stage

    export = load_export(tiny_export_dir)
    pixels = sample_feeds("encoder", "opt", sizes={"batch": 1})[PIXELS]
    core = ov.Core()
    static = compile_stage(core, export, "encoder", precision="fp32", cache=False, static_batch=1)
    dynamic = compile_stage(core, export, "encoder", precision="fp32", cache=False)
    assert static.inputs[0].get_partial_shape().is_static
    assert not dynamic.inputs[0].get_partial_shape().is_static
    np.testing.assert_array_equal(static(pixels)[0], dynamic(pixels)[0])


def _fully_connected_kernels(compiled) -> list[str]:
    """The kernel OpenVINO chose for each fully connected layer of a compiled model."""
    kernels = []
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) == "FullyConnected":
            kernels.append(info["primitiveType"].astype(str))
    return kernels


def test_fp32_encoder_products_run_in_onednn_with_the_same_outputs(tiny_export_dir):
    """Every matrix product of the FP32 encoder gets an identity clamp, so OpenVINO runs it in
    oneDNN instead of MLAS; the outputs stay those of the unrouted graph."""
    import openvino as ov

    from s3pot.runtime.backends.export_folder import load_export
    from s3pot.runtime.backends.openvino import loader

    export = load_export(tiny_export_dir)
    core = ov.Core()
    graph = core.read_model(str(export.graphs["encoder"]))
    products = sum(node.get_type_name() == "MatMul" and
                   node.input_value(1).get_node().get_type_name() == "Constant"
                   for node in graph.get_ordered_ops())
    assert products > 0 and loader.route_matmuls_to_onednn(graph) == products
    clamps = [node for node in graph.get_ordered_ops() if node.get_type_name() == "Clamp"]
    assert len(clamps) == products

    pixels = sample_feeds("encoder", "opt", sizes={"batch": 1})[PIXELS]
    # static shapes (as the runner compiles the encoder): kernels are chosen at compile time
    routed = loader.compile_stage(core, export, "encoder", precision="fp32", cache=False,
                                  static_batch=1)
    kernels = _fully_connected_kernels(routed)
    assert kernels and not any("mlas" in kernel for kernel in kernels), kernels
    graph = core.read_model(str(export.graphs["encoder"]))
    graph.reshape({graph.inputs[0].get_any_name(): list(pixels.shape)})
    unrouted = core.compile_model(graph, "CPU", loader.compile_config("fp32", available=["fp32"]))
    assert any("mlas" in kernel for kernel in _fully_connected_kernels(unrouted))
    assert rel_l2(routed(pixels)[0], unrouted(pixels)[0]) < 1e-6


def test_only_the_fp32_encoder_is_routed(tiny_export_dir, monkeypatch):
    import openvino as ov

    from s3pot.runtime.backends.export_folder import load_export
    from s3pot.runtime.backends.openvino import loader

    calls = []
    monkeypatch.setattr(loader, "route_matmuls_to_onednn", lambda graph: calls.append(graph) or 0)
    export, core = load_export(tiny_export_dir), ov.Core()
    for stage in ("fe", "decoder"):
        loader.compile_stage(core, export, stage, precision="fp32", cache=False)
    assert not calls
    loader.compile_stage(core, export, "encoder", precision="fp32", cache=False)
    assert len(calls) == 1
    if "bf16" in loader.cpu_precisions(core):
        loader.compile_stage(core, export, "encoder", precision="bf16", cache=False)
        assert len(calls) == 1
