"""``s3pot build`` against a fake TensorRT 10 and 11 (tests/fake_tensorrt.py): what the builder asks
of TensorRT for each precision, profiles, timing cache, rebuild decisions, failure clean-up."""
from __future__ import annotations

import json
import logging
import sys

import pytest

from fake_tensorrt import (FP32_NODES, OTHER_NODES, decode_plan, graph_file, make_export_folder,
                           make_fake_tensorrt, make_stage_graph, write_graph)
from s3pot.core.errors import ExportError
from s3pot.core.io_table import STAGES, get_stage
from s3pot.core.manifest import read_manifest, write_manifest
from s3pot.core.sidecar import engine_path, read_sidecar, sidecar_path
from s3pot.export.tensorrt import GpuInfo, build_engines
from s3pot.export.tensorrt.timing_cache import timing_cache_path

TRT10, TRT11 = "10.16.0.1", "11.1.0.5"
GPU = GpuInfo("Fake GPU", "9.0", "test")


def install(monkeypatch, version: str, **gpu):
    fake = make_fake_tensorrt(version, **gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def build(export_dir, out, precision: str, stages=("encoder",), **kw):
    return build_engines(export_dir, precisions=[precision], stages=list(stages), out=out, gpu=GPU, **kw)


def plan_of(out, stage: str, precision: str) -> dict:
    return decode_plan(engine_path(None, stage, precision, out).read_bytes())


def test_trt10_fp16_pins_only_float_norm_softmax_reduce_layers(export_dir, tmp_path, monkeypatch):
    install(monkeypatch, TRT10)
    [result] = build(export_dir, tmp_path / "engines", "fp16")
    plan = plan_of(tmp_path / "engines", "encoder", "fp16")
    assert plan["parsed_file"].endswith(graph_file("encoder", "fp32"))
    assert not plan["strongly_typed"] and plan["network_flags"] == 0
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS"} <= set(plan["flags"])
    assert "PREFER_PRECISION_CONSTRAINTS" not in plan["flags"]
    assert set(plan["pins"]) == set(FP32_NODES)  # not the INT64 ReduceMax, Shape, Gather, Cast
    for name in FP32_NODES:
        assert plan["pins"][name] == {"precision": "FLOAT", "outputs": {"0": "FLOAT"}}
    assert plan["layers"]["largest_dim"] == {"type": "REDUCE", "dtypes": ["INT64"]}
    assert not set(plan["pins"]) & set(OTHER_NODES)
    sidecar = read_sidecar(result.engine)
    assert sidecar.builder["typing"] == "weak" and sidecar.builder["precision_constraints"] == "obey"
    assert sorted(sidecar.builder["fp32_layers"]) == sorted(FP32_NODES)
    assert result.fp32_layers == len(FP32_NODES)


def test_trt11_fp16_builds_mixed_precision_graph_strongly_typed(export_dir, tmp_path, monkeypatch):
    fake = install(monkeypatch, TRT11)
    build(export_dir, tmp_path / "engines", "fp16")
    plan = plan_of(tmp_path / "engines", "encoder", "fp16")
    assert plan["parsed_file"].endswith(graph_file("encoder", "fp16"))
    strong = 1 << int(fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert plan["strongly_typed"] and plan["network_flags"] == strong
    assert plan["flags"] == ["TF32"] and plan["pins"] == {}  # no precision flag of any kind
    assert plan["layers"]["project"]["dtypes"] == ["HALF"]  # the FP16 islands came from the ONNX
    assert plan["layers"]["norm"]["dtypes"] == ["FLOAT"]
    sidecar = read_sidecar(engine_path(None, "encoder", "fp16", tmp_path / "engines"))
    assert sidecar.builder["typing"] == "strong" and sidecar.builder["flags"] == []
    assert sidecar.onnx_file == graph_file("encoder", "fp16")
    assert sidecar.onnx_sha256 == read_manifest(export_dir)["graphs"]["encoder"]["fp16"]["sha256"]


def test_trt11_fp16_without_the_fp16_graph_says_what_to_export(tmp_path, monkeypatch):
    install(monkeypatch, TRT11)
    model = make_export_folder(tmp_path / "model", precisions=("fp32",), stages=("encoder",))
    with pytest.raises(ExportError, match=r"fp16 graph of stage 'encoder'.*--precision fp32 fp16"):
        build(model, tmp_path / "engines", "fp16")
    assert not (tmp_path / "engines").exists()


@pytest.mark.parametrize("version", [TRT10, TRT11])
def test_fp32_clears_tf32_and_sets_no_fp16(export_dir, tmp_path, monkeypatch, version):
    install(monkeypatch, version)
    [result] = build(export_dir, tmp_path / "engines", "fp32")
    plan = plan_of(tmp_path / "engines", "encoder", "fp32")
    assert plan["flags"] == [] and plan["pins"] == {}
    assert plan["parsed_file"].endswith(graph_file("encoder", "fp32"))
    assert plan["strongly_typed"] == (version == TRT11)
    assert read_sidecar(result.engine).builder["tf32"] is False


@pytest.mark.parametrize("version", [TRT10, TRT11])
def test_one_profile_per_engine_from_the_io_table(export_dir, tmp_path, monkeypatch, version):
    install(monkeypatch, version)
    build(export_dir, tmp_path / "engines", "fp16", stages=STAGES)
    for stage in STAGES:
        expected = {name: [list(s) for s in shapes]
                    for name, shapes in get_stage(stage).profile().items()}
        assert plan_of(tmp_path / "engines", stage, "fp16")["profiles"] == [expected], stage
        assert read_sidecar(engine_path(None, stage, "fp16", tmp_path / "engines")).profiles == [
            {name: dict(zip(("min", "opt", "max"), shapes)) for name, shapes in expected.items()}]


def test_graph_whose_inputs_differ_from_the_io_table_is_refused(tmp_path, monkeypatch):
    install(monkeypatch, TRT10)
    model = make_export_folder(tmp_path / "model", precisions=("fp32",), stages=("fe",))
    manifest = read_manifest(model)
    write_graph(model, manifest, "fe", "fp32", make_stage_graph("sa"))  # sa's inputs under fe's name
    write_manifest(model, {k: v for k, v in manifest.items() if k not in ("format", "version")})
    with pytest.raises(ExportError, match=r"expected the inputs of stage 'fe'.*point_coords"):
        build(model, tmp_path / "engines", "fp32", stages=("fe",))


def test_timing_cache_loaded_and_saved_keyed_by_gpu_and_version(export_dir, tmp_path, monkeypatch,
                                                                cache_home):
    install(monkeypatch, TRT10)
    out = tmp_path / "engines"
    build(export_dir, out, "fp16", stages=("encoder",))
    cache = timing_cache_path(GPU, TRT10)
    assert cache.parent == cache_home / "s3pot" / "tensorrt" and cache.is_file()
    assert plan_of(out, "encoder", "fp16")["timing_cache_entries_loaded"] == 0
    build(export_dir, out, "fp16", stages=("fe",))
    assert plan_of(out, "fe", "fp16")["timing_cache_entries_loaded"] == 1  # the encoder's timings
    assert read_sidecar(engine_path(None, "fe", "fp16", out)).builder["timing_cache_loaded"] is True
    other = timing_cache_path(GpuInfo("Other GPU", "8.6"), TRT10)
    assert len({cache, other, timing_cache_path(GPU, TRT11)}) == 3
    assert b"fe.onnx" in cache.read_bytes() and not other.exists()


def test_timing_cache_of_another_device_is_replaced(export_dir, tmp_path, monkeypatch, caplog):
    install(monkeypatch, TRT10, gpu_name="Other GPU")
    own = tmp_path / "own.timing"
    build(export_dir, tmp_path / "a", "fp32", timing_cache_file=own)  # made on "Other GPU"
    install(monkeypatch, TRT10)
    with caplog.at_level(logging.WARNING):
        build(export_dir, tmp_path / "b", "fp32", timing_cache_file=own)
    assert "refused" in caplog.text
    assert plan_of(tmp_path / "b", "encoder", "fp32")["timing_cache_entries_loaded"] == 0
    assert b"Fake GPU|9.0" in own.read_bytes()


def test_unchanged_engine_is_kept(export_dir, tmp_path, monkeypatch):
    fake = install(monkeypatch, TRT10)
    out = tmp_path / "engines"
    [first] = build(export_dir, out, "fp16")
    plan = first.engine.read_bytes()
    [again] = build(export_dir, out, "fp16")
    assert again.status == "up to date" and len(fake.record.builds) == 1
    assert first.engine.read_bytes() == plan
    [forced] = build(export_dir, out, "fp16", force=True)
    assert forced.status == "built" and len(fake.record.builds) == 2


def _change_onnx(model):
    manifest = read_manifest(model)
    changed = make_stage_graph("encoder")
    changed.graph.node[0].name = "renamed_norm"
    write_graph(model, manifest, "encoder", "fp32", changed)
    write_manifest(model, {k: v for k, v in manifest.items() if k not in ("format", "version")})
    return manifest["graphs"]["encoder"]["fp32"]["sha256"]


# (no parameter id "gpu": tests/conftest.py skips items with that keyword without a GPU)
@pytest.mark.parametrize("change", ["trt_version", "gpu_model", "onnx_graph", "plan_file"])
def test_stale_engine_is_rebuilt_saying_why(tmp_path, monkeypatch, caplog, change):
    model = make_export_folder(tmp_path / "model", precisions=("fp32",), stages=("encoder",))
    install(monkeypatch, TRT10)
    [first] = build(model, tmp_path / "engines", "fp32")
    old_sha = read_sidecar(first.engine).onnx_sha256
    gpu, version, expected = GPU, TRT10, ()
    if change == "trt_version":
        version, expected = "10.16.1.2", (TRT10, "10.16.1.2")
    elif change == "gpu_model":
        gpu, expected = GpuInfo("Other GPU", "8.6"), ("Fake GPU", "Other GPU", "9.0", "8.6")
    elif change == "onnx_graph":
        expected = (old_sha[:16], _change_onnx(model)[:16])
    else:
        first.engine.write_bytes(b"damaged")
        expected = ("sha256",)
    fake = install(monkeypatch, version, gpu_name=gpu.name, compute_capability=gpu.compute_capability)
    with caplog.at_level(logging.INFO, logger="s3pot.export.tensorrt"):
        [result] = build_engines(model, precisions=["fp32"], stages=["encoder"],
                                 out=tmp_path / "engines", gpu=gpu)
    assert result.status == "built" and len(fake.record.builds) == 1
    line = next(r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage())
    assert all(value in line for value in expected), line
    assert all(value in result.reason for value in expected)
    sidecar = read_sidecar(result.engine)
    assert (sidecar.tensorrt_version, sidecar.gpu_name) == (version, gpu.name)


def test_never_version_compatible_hardware_level_or_host_code(export_dir, tmp_path, monkeypatch):
    for version in (TRT10, TRT11):
        fake = install(monkeypatch, version)
        build(export_dir, tmp_path / version, "fp16", stages=STAGES)
        build(export_dir, tmp_path / version, "fp32", stages=STAGES)
        assert len(fake.record.builds) == 2 * len(STAGES)
        for record in fake.record.builds:
            assert "VERSION_COMPATIBLE" not in record["flags"]
            assert record["hardware_compatibility_level_sets"] == []
            assert record["profiling_verbosity"] == "DETAILED"
        assert fake.record.host_code_sets == []


def test_failed_build_leaves_no_engine_and_no_sidecar(export_dir, tmp_path, monkeypatch):
    fake = install(monkeypatch, TRT10)
    out = tmp_path / "engines"
    [first] = build(export_dir, out, "fp16")
    fake.fail_build = "Internal Error: out of device memory"
    with pytest.raises(ExportError, match="could not build.*out of device memory"):
        build(export_dir, out, "fp16", force=True)
    assert not first.engine.exists() and not sidecar_path(first.engine).exists()
    assert list(first.engine.parent.iterdir()) == []  # no temporary file either


def test_parser_errors_are_reported(tmp_path, monkeypatch):
    install(monkeypatch, TRT10)
    model = make_export_folder(tmp_path / "model", precisions=("fp32",), stages=("sa",),
                               unknown_op=True)
    with pytest.raises(ExportError, match="parser failed.*No importer registered for op: S3potUnknownOp"):
        build(model, tmp_path / "engines", "fp32", stages=("sa",))
    assert not (tmp_path / "engines" / "fp32" / "sa.engine").exists()


def test_altered_graph_is_refused_before_building(tmp_path, monkeypatch):
    fake = install(monkeypatch, TRT10)
    model = make_export_folder(tmp_path / "model", precisions=("fp32",), stages=("encoder",))
    (model / graph_file("encoder", "fp32")).write_bytes(b"not the exported graph")
    with pytest.raises(ExportError, match="sha256"):
        build(model, tmp_path / "engines", "fp32")
    assert fake.record.builds == []


def test_sidecar_records_machine_graph_and_plan(export_dir, tmp_path, monkeypatch):
    import hashlib

    install(monkeypatch, TRT10)
    [result] = build(export_dir, tmp_path / "engines", "fp16", stages=("decoder",))
    data = json.loads(sidecar_path(result.engine).read_text())
    assert data["format"] == "s3pot-engine" and data["version"] == 1
    assert (data["stage"], data["precision"], data["tensorrt_version"]) == ("decoder", "fp16", TRT10)
    assert (data["gpu_name"], data["compute_capability"]) == (GPU.name, "9.0")
    assert data["plan_sha256"] == hashlib.sha256(result.engine.read_bytes()).hexdigest()
    assert data["onnx_sha256"] == read_manifest(export_dir)["graphs"]["decoder"]["fp32"]["sha256"]
    assert data["build_seconds"] >= 0 and data["created"] and data["s3pot_version"]


# -- the fake itself behaves as TensorRT documents ------------------------------------------------
def test_fake_trt11_lacks_the_removed_weak_typing_api():
    trt = make_fake_tensorrt(TRT11)
    for owner, name in [(trt.BuilderFlag, "FP16"), (trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"),
                        (trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")]:
        with pytest.raises(AttributeError):
            getattr(owner, name)
    builder = trt.Builder(trt.Logger())
    with pytest.raises(AttributeError):
        builder.platform_has_fast_fp16
    layer = trt.ILayer(None)
    with pytest.raises(AttributeError):
        layer.precision = trt.float32
    with pytest.raises(AttributeError):
        layer.set_output_type(0, trt.float32)
    assert trt.BuilderFlag.TF32 and trt.BuilderFlag.VERSION_COMPATIBLE  # kept in 11.x


def test_fake_trt10_fails_fp16_on_strongly_typed_networks_and_int_pins(tmp_path):
    trt = make_fake_tensorrt(TRT10)
    path = tmp_path / "sa.onnx"
    import onnx
    onnx.save(make_stage_graph("sa"), str(path))

    def attempt(strong: bool, pin: str | None):
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        assert parser.parse_from_file(str(path))
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in get_stage("sa").profile().items():
            profile.set_shape(name, min=lo, opt=opt, max=hi)
        config.add_optimization_profile(profile)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name == pin:
                layer.set_output_type(0, trt.float32)
        return builder.build_serialized_network(network, config), logger.messages

    plan, _ = attempt(False, "softmax")
    assert plan is not None
    plan, messages = attempt(True, None)
    assert plan is None and "strongly typed" in messages[-1][1]
    plan, messages = attempt(False, "largest_dim")  # an INT64 ReduceMax
    assert plan is None and "INT64" in messages[-1][1]
