"""The engine sidecar (s3pot.core.sidecar): written and read back, and every mismatch refused with a
message that names the engine and both values."""
from __future__ import annotations

import hashlib
import json
import re

import pytest

from s3pot.core.errors import ExportError
from s3pot.core.io_table import PIXELS
from s3pot.core.sidecar import (Sidecar, check_engine, check_plan, check_sidecar, now_iso,
                                profile_json, read_sidecar, sidecar_path, write_sidecar)

MACHINE = {"tensorrt_version": "10.16.0.1", "gpu_name": "NVIDIA H100 80GB HBM3",
           "compute_capability": "9.0", "onnx_sha256": "a" * 64}


@pytest.fixture
def engine(tmp_path):
    """``x/encoder.engine`` with a matching sidecar."""
    path = tmp_path / "x" / "encoder.engine"
    path.parent.mkdir()
    path.write_bytes(b"plan bytes")
    write_sidecar(path, Sidecar(
        stage="encoder", precision="fp16", tensorrt_version=MACHINE["tensorrt_version"],
        gpu_name=MACHINE["gpu_name"], compute_capability="9.0", profiles=profile_json("encoder"),
        onnx_file="encoder.onnx", onnx_sha256=MACHINE["onnx_sha256"],
        plan_sha256=hashlib.sha256(b"plan bytes").hexdigest(),
        builder={"typing": "weak", "flags": ["FP16", "OBEY_PRECISION_CONSTRAINTS"],
                 "precision_constraints": "obey", "tf32": True, "fp32_layers": ["norm"]},
        build_seconds=1.5, created=now_iso(), s3pot_version="0.1.0"))
    return path


def test_round_trip(engine):
    sidecar = read_sidecar(engine)
    assert sidecar.engine == engine and read_sidecar(sidecar_path(engine)) == sidecar
    assert sidecar.profiles == [{PIXELS: {"min": [1, 3, 1024, 1024], "opt": [2, 3, 1024, 1024],
                                            "max": [8, 3, 1024, 1024]}}]
    data = json.loads(sidecar_path(engine).read_text())
    assert data["format"] == "s3pot-engine" and data["version"] == 1 and "engine" not in data
    assert check_engine(engine, **MACHINE, precision="fp16") == sidecar


@pytest.mark.parametrize("field, value, both", [
    ("tensorrt_version", "11.1.0.5", ("TensorRT 10.16.0.1", "this machine has 11.1.0.5")),
    ("gpu_name", "NVIDIA A100-SXM4-80GB", ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")),
    ("compute_capability", "8.0", ("capability 9.0", "capability 8.0")),
    ("onnx_sha256", "b" * 64, ("a" * 16, "b" * 16)),
])
def test_mismatch_is_refused_naming_engine_and_both_values(engine, field, value, both):
    with pytest.raises(ExportError) as info:
        check_sidecar(read_sidecar(engine), **{**MACHINE, field: value}, model_dir="models/vit_b")
    message = str(info.value)
    assert f"engine '{engine}'" in message
    assert all(part in message for part in both), message
    assert "`s3pot build --model models/vit_b --precision fp16`" in message


def test_trt_version_message_reads_as_documented(engine):
    with pytest.raises(ExportError, match=r"^engine '.*encoder\.engine' was built by TensorRT "
                       r"10\.16\.0\.1, this machine has 11\.1\.0\.5: rebuild it with `s3pot build "):
        check_sidecar(read_sidecar(engine), **{**MACHINE, "tensorrt_version": "11.1.0.5"})


def test_other_precision_and_other_profile_are_refused(engine):
    with pytest.raises(ExportError, match="built for fp16, expected fp32"):
        check_sidecar(read_sidecar(engine), **MACHINE, precision="fp32")
    data = json.loads(sidecar_path(engine).read_text())
    data["profiles"][0][PIXELS]["max"] = [4, 3, 1024, 1024]
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(ExportError, match=r"input shapes .*\[4, 3, 1024, 1024\].*expects .*\[2, 3"):
        check_sidecar(read_sidecar(engine), **MACHINE)


def test_unknown_onnx_hash_is_not_compared(engine):
    check_sidecar(read_sidecar(engine), **{**MACHINE, "onnx_sha256": None})


def test_replaced_plan_is_refused(engine):
    engine.write_bytes(b"another plan")
    with pytest.raises(ExportError, match=r"expected sha256 .* got .*replaced or damaged") as info:
        check_plan(read_sidecar(engine))
    assert hashlib.sha256(b"another plan").hexdigest()[:16] in str(info.value)
    engine.unlink()
    with pytest.raises(ExportError, match="no such file"):
        check_engine(engine, **MACHINE)


def test_missing_or_damaged_sidecar_is_a_clear_error(engine):
    side = sidecar_path(engine)
    side.write_text("{ not json")
    with pytest.raises(ExportError, match=re.escape(f"sidecar '{side}': expected JSON")):
        read_sidecar(engine)
    side.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ExportError, match="expected format 's3pot-engine', got 'something-else'"):
        read_sidecar(engine)
    side.write_text(json.dumps({"format": "s3pot-engine", "version": 1, "stage": "encoder"}))
    with pytest.raises(ExportError, match="missing .*'tensorrt_version'"):
        read_sidecar(engine)
    side.unlink()
    with pytest.raises(ExportError, match=re.escape(f"engine '{engine}': expected its sidecar")):
        read_sidecar(engine)
