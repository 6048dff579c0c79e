"""The four stage modules are written for export: each traces to ONNX (opset 17) and runs in ONNX
Runtime on the CPU with the PyTorch result (relative L2 < 1e-5). The exporter proper (IO table,
dynamic axes, engines) is the export milestone's; this guards the model code it will consume."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import rel_l2
from s3pot.models import DecoderStage, EncoderStage, FEStage, SAStage


def _cases(model):
    g = torch.Generator().manual_seed(0)
    return {
        "encoder": (EncoderStage(model), {"pixels": torch.randn(2, 3, 1024, 1024, generator=g)}),
        "fe": (FEStage(model), {"embeddings": torch.randn(2, 256, 64, 64, generator=g),
                                "point": torch.rand(2, 1, 2, generator=g) * 1024}),
        "sa": (SAStage(model), {"points": torch.rand(1, 37, 2, generator=g) * 1024,
                                "labels": torch.randint(0, 2, (1, 37), generator=g)}),
        "decoder": (DecoderStage(model), {"embeddings": torch.randn(1, 256, 64, 64, generator=g),
                                          "prompts": torch.randn(1, 38, 256, generator=g)}),
    }


@pytest.mark.parametrize("variant", ["tiny", "tiny_mobile"])
def test_stages_export_and_match_in_onnxruntime(variant, tmp_path):
    from s3pot.models import build_s3pot

    model = build_s3pot(variant, random_weights=True)
    for name, (stage, inputs) in _cases(model).items():
        if variant != "tiny" and name != "encoder":
            continue  # the prompt path does not depend on the encoder variant
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(stage, tuple(inputs.values()), str(path), input_names=list(inputs),
                              output_names=["output"], opset_version=17, dynamo=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
        with torch.no_grad():
            want = stage(*inputs.values()).numpy()
        assert got.shape == want.shape
        assert rel_l2(got, want) < 1e-5, name
        assert not model.training, "exporting must leave the model in eval mode"
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        assert "ReduceMean" not in ops, f"{name}: a LayerNorm exported decomposed"
        if name == "encoder":
            assert ops.count("LayerNormalization") >= 2  # the neck's two LayerNorm2d
