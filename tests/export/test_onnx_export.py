"""ONNX export of the four stages: graphs named and shaped by the IO table, each matching its
PyTorch stage in ONNX Runtime (relative L2 < 1e-4) at the smallest, typical and largest dynamic
sizes; FP16 graphs finite and close; the pipeline assembled from the graphs picks the PyTorch
pipeline's prompts; a failed export leaves nothing behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from helpers import rel_l2
from s3pot.core.errors import ExportError
from s3pot.core.io_table import (DECODER, ENCODER, FE, MAX_IMAGE_BATCH, NUM_POINTS, PAIR_BATCH, SA, STAGES,
                                 TYPICAL_POINTS)
from s3pot.core.manifest import read_manifest, sha256_file, verify_graph
from s3pot.export import onnx_export
from s3pot.export.folder import ExportRequest, export_folder
from s3pot.export.onnx_export import IR_VERSION, OPSET, ort_session, run_torch, sample_feeds

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
FP32_TOL = 1e-4
SIZES = {  # every dynamic size the table allows at its ends and its typical value
    ENCODER.name: [{"batch": 1}, {"batch": MAX_IMAGE_BATCH}],
    FE.name: [{"pair": 1}, {"pair": PAIR_BATCH}],
    SA.name: [{NUM_POINTS.name: n} for n in (1, TYPICAL_POINTS, NUM_POINTS.max)],
    DECODER.name: [{NUM_POINTS.plus(1).name: n + 1} for n in (1, TYPICAL_POINTS, NUM_POINTS.max)],
}


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """``s3pot export --variant tiny --random-weights`` (no checkpoint), FP32 and FP16, each graph
    checked by the export itself."""
    from s3pot.models import build_s3pot
    from s3pot.runtime.cli import main

    out = tmp_path_factory.mktemp("export-tiny") / "model"
    assert main(["export", "--variant", "tiny", "--random-weights", "--seed", "3", "--out", str(out),
                 "--precision", "fp32", "fp16"]) == 0
    return out, read_manifest(out), build_s3pot("tiny", random_weights=True, seed=3)


@pytest.fixture(scope="module")
def tiny_mobile_export(tmp_path_factory):
    from s3pot.models import build_s3pot

    out = tmp_path_factory.mktemp("export-tiny_mobile") / "model"
    manifest = export_folder(ExportRequest(variant="tiny_mobile", random_weights=True, seed=3,
                                           verify=False), out)  # the tests below check parity
    return out, manifest, build_s3pot("tiny_mobile", random_weights=True, seed=3)


def _stage_parity(folder: Path, model, stage, sizes: dict, precision: str = "fp32") -> float:
    from s3pot.models import STAGE_MODULES

    name = f"{stage.name}.onnx" if precision == "fp32" else f"{stage.name}.fp16.onnx"
    feeds = sample_feeds(stage, "opt", sizes=sizes, seed=7)
    got = ort_session(folder / name).run(stage.output_names, feeds)[0]
    want = run_torch(STAGE_MODULES[stage.name](model), stage, feeds)[0]
    assert got.shape == want.shape
    assert np.isfinite(got).all()
    return rel_l2(got, want)


@pytest.mark.parametrize("stage", list(STAGES))
def test_tiny_graphs_match_pytorch_at_every_size(tiny_export, stage):
    folder, _, model = tiny_export
    for sizes in SIZES[stage]:
        assert _stage_parity(folder, model, STAGES[stage], sizes) < FP32_TOL, sizes


@pytest.mark.parametrize("stage", list(STAGES))
def test_tiny_mobile_graphs_match_pytorch(tiny_mobile_export, stage):
    folder, _, model = tiny_mobile_export
    for sizes in (SIZES[stage][0], SIZES[stage][-1]):
        assert _stage_parity(folder, model, STAGES[stage], sizes) < FP32_TOL, sizes


@pytest.mark.parametrize("stage", list(STAGES))
def test_fp16_graphs_are_finite_and_close(tiny_export, stage):
    folder, manifest, model = tiny_export
    assert _stage_parity(folder, model, STAGES[stage], SIZES[stage][-1], "fp16") < 1e-2
    record = manifest["graphs"][stage]["fp16"]
    assert 0 < record["fp16_nodes"] < record["nodes"]
    graph = onnx.load(str(folder / record["file"]))
    io_types = {v.type.tensor_type.elem_type for v in (*graph.graph.input, *graph.graph.output)}
    assert io_types == {onnx.TensorProto.FLOAT}  # FP32 in and out
    for node in graph.graph.node:  # the pinned ops compute in FP32
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert node.name, node
    half_inputs = _fp16_tensors(graph)
    pinned = [n for n in graph.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert pinned and not any(i in half_inputs for n in pinned for i in n.input)


def _fp16_tensors(model) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    return {v.name for v in inferred.graph.value_info
            if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}


def test_manifest_records_the_export(tiny_export):
    folder, manifest, _ = tiny_export
    assert read_manifest(folder) == json.loads((folder / "manifest.json").read_text())
    assert manifest["variant"] == "tiny" and manifest["normalization"] == "sam"
    assert manifest["face_set"] == [1, 2, 3, 5, 6, 9]
    assert manifest["weights"] == {"kind": "random", "seed": 3, "adapter": None}
    assert (manifest["opset"], manifest["ir_version"]) == (OPSET, IR_VERSION)
    assert {"torch", "onnx", onnx_export.DEFAULT_SIMPLIFIER, "s3pot-rt"} <= set(manifest["tools"])
    assert manifest["simplifier"] == onnx_export.DEFAULT_SIMPLIFIER
    for stage, io in STAGES.items():
        for precision in ("fp32", "fp16"):
            record = manifest["graphs"][stage][precision]
            path = folder / record["file"]
            assert sha256_file(path) == record["sha256"]
            graph = onnx.load(str(path), load_external_data=False)
            assert graph.ir_version == IR_VERSION
            assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
            assert [i.name for i in graph.graph.input] == io.input_names
            assert [o.name for o in graph.graph.output] == io.output_names
            assert manifest["checks"][stage][precision]["rel_l2"] < (FP32_TOL if precision == "fp32" else 5e-2)


def _square_makers(path: Path) -> set[str]:
    """Op types of the nodes that write a tokens x tokens (4096 x 4096) tensor."""
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.graph.value_info}
    square = {name for name, dims in shapes.items() if dims[-2:] == [4096, 4096]}
    return {n.op_type for n in graph.graph.node if any(o in square for o in n.output)}


@pytest.mark.parametrize("attention, materialised", [("bias", True), ("global", False)])
def test_the_folded_encoder_does_not_materialise_the_global_bias(tmp_path, attention, materialised):
    """With the bias folded into queries and keys no Add or Expand builds a tokens x tokens tensor:
    the only 4096 x 4096 tensors left are the attention scores (MatMul, Softmax). SAM's form adds
    a materialised bias."""
    out = tmp_path / attention
    export_folder(ExportRequest(variant="tiny", random_weights=True, attention=attention,
                                stages=(ENCODER.name,)), out)
    makers = _square_makers(out / "encoder.onnx")
    assert {"MatMul", "Softmax"} <= makers
    assert bool(makers - {"MatMul", "Softmax", "Mul", "Div"}) == materialised, makers


@pytest.mark.parametrize("stage", list(STAGES))
def test_polygraphy_reads_each_graph(tiny_export, stage):
    folder, _, _ = tiny_export
    out = subprocess.run([sys.executable, "-m", "polygraphy", "inspect", "model",
                          str(folder / f"{stage}.onnx")], capture_output=True, text=True)
    if out.returncode != 0 and "No module named polygraphy" in out.stderr:
        out = subprocess.run(["polygraphy", "inspect", "model", str(folder / f"{stage}.onnx")],
                             capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in STAGES[stage].input_names + STAGES[stage].output_names:
        assert name in out.stdout


def _segment_pairs():
    from helpers import astronaut_sample

    yield "obama_face", (DATA / "obama_face.jpg", DATA / "obama_face_ref.jpg",
                         DATA / "obama_face_parsing_mask.npy")
    yield "astronaut", astronaut_sample()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def compare_pipelines(folder: Path, model, precisions=("fp32", "fp16")) -> dict:
    """The pipeline over the exported graphs against the PyTorch pipeline on the test photos:
    ``{precision: {sample: {"same_prompts": bool, "prompt_agreement": float, "iou": float}}}``."""
    from s3pot.runtime.backends import ModelSpec, create_runner
    from s3pot.runtime.backends.torch import TorchRunner
    from s3pot.runtime.pipeline import Pipeline

    reference = Pipeline(TorchRunner(model, device="cpu"))
    wants = {name: reference.segment(*sample) for name, sample in _segment_pairs()}
    found = {}
    for precision in precisions:
        exported = Pipeline(create_runner("onnxruntime", ModelSpec(folder=folder, precision=precision)))
        found[precision] = {}
        for name, sample in _segment_pairs():
            want, got = wants[name], exported.segment(*sample)
            same = np.intersect1d(want.occlusion_tokens, got.occlusion_tokens).size + \
                np.intersect1d(want.face_tokens, got.face_tokens).size
            total = want.occlusion_tokens.size + want.face_tokens.size
            found[precision][name] = {
                "same_prompts": bool(np.array_equal(want.occlusion_tokens, got.occlusion_tokens)),
                "prompt_agreement": same / total, "iou": _iou(want.occlusion, got.occlusion),
                "finite": bool(np.isfinite(got.low_res_logits).all())}
    return found


def test_pipeline_from_the_graphs_gives_the_pytorch_prompts_and_mask(tiny_export):
    """FP32: the same prompts and a mask IoU >= 0.999; FP16: IoU >= 0.98."""
    folder, _, model = tiny_export
    found = compare_pipelines(folder, model)
    for name, fp32 in found["fp32"].items():
        assert fp32["same_prompts"] and fp32["iou"] >= 0.999, (name, fp32)
    for name, fp16 in found["fp16"].items():
        assert fp16["finite"] and fp16["iou"] >= 0.98 and fp16["prompt_agreement"] >= 0.95, (name, fp16)


def test_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = onnx_export.export_stage

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ExportError("simulated failure in the second stage")
        return real(*args, **kwargs)

    monkeypatch.setattr("s3pot.export.folder.export_stage", fail_on_second)
    out = tmp_path / "model"
    with pytest.raises(ExportError, match="second stage"):
        export_folder(ExportRequest(variant="tiny", random_weights=True, verify=False,
                                    stages=(SA.name, FE.name)), out)
    assert list(tmp_path.iterdir()) == []


def test_large_weights_go_to_one_external_data_file(tmp_path, monkeypatch):
    """Past the 2 GB protobuf limit (ViT-H's encoder) weights are saved beside the graph; the
    threshold is lowered here so a small graph takes that path."""
    umask = os.umask(0o022)
    os.umask(umask)
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 1000)
    out = tmp_path / "model"
    manifest = export_folder(ExportRequest(variant="tiny", random_weights=True, stages=(SA.name,)),
                             out)
    record = manifest["graphs"][SA.name]["fp32"]
    assert [d["file"] for d in record["external_data"]] == ["sa.onnx.data"]
    assert (out / "sa.onnx").stat().st_size < (out / "sa.onnx.data").stat().st_size / 10
    assert manifest["checks"][SA.name]["fp32"]["rel_l2"] < FP32_TOL  # ran from external data
    graph = onnx.load(str(out / "sa.onnx"), load_external_data=False)
    inline = [t.name for t in graph.graph.initializer if t.ByteSize() >= 2048]
    inline += [n.name for n in graph.graph.node if n.op_type == "Constant"
               and any(a.t.ByteSize() >= 2048 for a in n.attribute)]
    assert not inline, inline  # every large tensor, folded constants included, went out
    for path in (out / "sa.onnx", out / "sa.onnx.data"):  # the umask's mode, not 0600
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    (out / "sa.onnx.data").write_bytes(b"0" * 10)
    with pytest.raises(ExportError, match="sa.onnx.data': expected sha256"):
        verify_graph(out, read_manifest(out), SA.name)


def test_cli_export_writes_four_graphs_and_refuses_to_clobber(tiny_export, capsys):
    from s3pot.runtime.cli import main

    folder, _, _ = tiny_export
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [  # .onnxruntime: cache
        "decoder.fp16.onnx", "decoder.onnx", "encoder.fp16.onnx", "encoder.onnx", "fe.fp16.onnx",
        "fe.onnx", "manifest.json", "sa.fp16.onnx", "sa.onnx"]
    before = sha256_file(folder / "manifest.json")
    assert main(["export", "--variant", "tiny", "--random-weights", "--out", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pass --overwrite" in err
    assert sha256_file(folder / "manifest.json") == before


def test_cli_export_into_an_impossible_folder_is_one_line(tmp_path, capsys):
    from s3pot.runtime.cli import main

    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "model"
    assert main(["export", "--variant", "tiny", "--random-weights", "--stages", "sa",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "an existing file, on the way" in err


@pytest.mark.parametrize("argv, message", [
    (["--variant", "tiny"], "expected a SAM checkpoint (--checkpoint) or an explicit --random-weights"),
    (["--variant", "tiny", "--checkpoint", "missing.pth"], "checkpoint 'missing.pth': expected an existing file"),
    (["--variant", "tiny", "--random-weights", "--adapter", "missing.pt"], "adapter 'missing.pt'"),
])
def test_cli_export_refuses_bad_input_before_building(tmp_path, capsys, argv, message):
    from s3pot.runtime.cli import main

    out = tmp_path / "model"
    assert main(["export", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not out.exists()


def test_a_manifest_of_another_variant_is_refused(tiny_export):
    from s3pot.runtime.backends.export_folder import load_export

    folder, _, _ = tiny_export
    with pytest.raises(ExportError, match="expected variant 'vit_b', got 'tiny'"):
        load_export(folder, variant="vit_b")


def test_export_of_a_checkpoint_and_adapter_records_both_and_runs_as_trained(tmp_path):
    """A user's export: an official-format checkpoint plus an adapter trained with the authors'
    normalisation and face set. The manifest names both files by sha256 and carries the adapter's
    context; the SA graph computes the adapter's weights."""
    import torch

    from s3pot.models import build_s3pot, save_adapter

    source = build_s3pot("tiny", random_weights=True, seed=5)
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save({f"{prefix}.{k}": v for prefix, module in source.sam_modules().items()
                for k, v in module.state_dict().items()}, checkpoint)
    with torch.no_grad():
        for p in source.sa.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(6)) * 0.1)
    adapter = save_adapter(tmp_path / "adapter.pt", source, variant="tiny", normalization="unit",
                           face_set="authors")
    out = tmp_path / "model"
    manifest = export_folder(ExportRequest(variant="tiny", checkpoint=checkpoint, adapter=adapter,
                                           stages=(SA.name,)), out)
    assert manifest["weights"] == {
        "kind": "checkpoint", "checkpoint": {"name": "sam_tiny.pth", "sha256": sha256_file(checkpoint)},
        "adapter": {"name": "adapter.pt", "sha256": sha256_file(adapter)}}
    assert (manifest["normalization"], manifest["face_set"]) == ("unit", [1, 2, 3, 5, 6, 9, 10])
    assert _stage_parity(out, source, SA, {NUM_POINTS.name: 37}) < FP32_TOL


def test_graphs_use_only_standard_operators(tiny_export, tmp_path):
    """No runtime-specific contrib ops (onnxsim 0.8 fuses attention into com.microsoft::Attention
    unless told not to; TensorRT cannot parse that)."""
    import onnx
    from onnx import helper

    folder, manifest, _ = tiny_export
    for stage in STAGES:
        for precision, entry in manifest["graphs"][stage].items():
            model = onnx.load(str(folder / entry["file"]), load_external_data=False)
            assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, (stage, precision)
    model = onnx.load(str(folder / "sa.onnx"))
    model.graph.node.append(helper.make_node("Gelu", [model.graph.input[0].name], ["gelu_out"],
                                             domain="com.microsoft"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model.graph.value_info.clear()
    path = tmp_path / "contrib.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match=r"expected only standard ONNX operators, got com\.microsoft::Gelu"):
        onnx_export.check_model(path)
