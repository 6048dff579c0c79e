"""``s3pot build`` on the command line: one line and exit 2 without TensorRT or a GPU, one line per
stage when building, ``--print-commands`` for TensorRT 10 and 11, and no torch import."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from fake_tensorrt import FP32_NODES, graph_file, make_export_folder, make_fake_tensorrt
from s3pot.core.io_table import STAGES
from s3pot.core import gpu as device
from s3pot.core.gpu import GpuInfo
from s3pot.runtime.cli import EXIT_USER_ERROR, main

BLOCK_IMPORTS = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'polygraphy', 'torch'):
            raise ImportError(f'blocked {name}')
sys.meta_path.insert(0, Block())
"""


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def _no_gpu(monkeypatch):
    def no_cuda_python():
        raise device.ProbeFailed("cuda-python is not installed")

    def no_smi():
        return device.nvidia_smi_gpu(which=lambda name: None)

    monkeypatch.setattr(device, "PROBES", [no_cuda_python, no_smi])


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == ""
    return lines[0]


def test_without_tensorrt_one_line_with_the_install_command(export_dir, capsys, no_tensorrt):
    assert main(["build", "--model", str(export_dir)]) == EXIT_USER_ERROR
    line = _one_error_line(capsys)
    assert line.startswith("s3pot: error: TensorRT is not installed")
    assert "pip install 'tensorrt-cu12>=10'" in line and "--print-commands" in line


def test_tensorrt_without_gpu_one_line(export_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.16.0.1"))
    _no_gpu(monkeypatch)
    assert main(["build", "--model", str(export_dir), "--out", str(export_dir.parent / "x")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("s3pot: error: no NVIDIA GPU found")
    assert "cuda-python is not installed" in line and "nvidia-smi not found" in line
    assert not (export_dir.parent / "x").exists()


def test_build_prints_one_line_per_stage_then_keeps_engines(export_dir, tmp_path, capsys, monkeypatch):
    fake = make_fake_tensorrt("10.16.0.1")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(device, "query_gpu", lambda: GpuInfo("Fake GPU", "9.0"))
    argv = ["build", "--model", str(export_dir), "--precision", "fp32", "fp16", "--out", str(tmp_path)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 * len(STAGES) + 1
    for line, (precision, stage) in zip(lines, [(p, s) for p in ("fp32", "fp16") for s in STAGES]):
        assert line.split()[:3] == [stage, precision, "built"] and " s " in line
    assert lines[-1].startswith(f"{2 * len(STAGES)} engine(s) built")
    assert (tmp_path / "fp16" / "encoder.engine").is_file()
    assert (tmp_path / "fp16" / "encoder.engine.json").is_file()
    assert main(argv) == 0
    assert all("up to date" in line for line in capsys.readouterr().out.splitlines()[:-1])
    assert len(fake.record.builds) == 2 * len(STAGES)


def test_trt_major_other_than_installed_is_refused_when_building(export_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.16.0.1"))
    assert main(["build", "--model", str(export_dir), "--trt-major", "11"]) == EXIT_USER_ERROR
    assert "--trt-major" in _one_error_line(capsys)


def _commands(capsys, *argv) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    assert main(["build", *argv, "--print-commands"]) == 0
    out = capsys.readouterr().out
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    result = {}
    for head, trtexec, polygraphy in blocks:
        stage, precision = head.split()[1:3]
        result[(stage, precision.rstrip(":"))] = (shlex.split(trtexec), shlex.split(polygraphy))
    return result


def test_print_commands_trt10_without_tensorrt(export_dir, capsys, no_tensorrt):
    commands = _commands(capsys, "--model", str(export_dir), "--precision", "fp16", "fp32")
    assert set(commands) == {(s, p) for s in STAGES for p in ("fp16", "fp32")}
    trtexec, poly = commands[("encoder", "fp16")]
    assert trtexec[0] == "trtexec" and f"--onnx={export_dir / graph_file('encoder', 'fp32')}" in trtexec
    assert {"--fp16", "--precisionConstraints=obey", "--skipInference"} <= set(trtexec)
    assert "--stronglyTyped" not in trtexec and "--noTF32" not in trtexec
    assert "--minShapes=pixels:1x3x1024x1024" in trtexec
    assert "--optShapes=pixels:2x3x1024x1024" in trtexec
    assert "--maxShapes=pixels:8x3x1024x1024" in trtexec
    precisions = next(a for a in trtexec if a.startswith("--layerPrecisions="))
    assert sorted(precisions.split("=", 1)[1].split(",")) == sorted(f"{n}:fp32" for n in FP32_NODES)
    outputs = next(a for a in trtexec if a.startswith("--layerOutputTypes="))
    assert "largest_dim" not in outputs and "norm:fp32" in outputs
    timing = next(a for a in trtexec if a.startswith("--timingCacheFile="))
    assert poly[:6] == ["polygraphy", "convert", str(export_dir / "encoder.onnx"), "--convert-to",
                        "trt", "-o"]
    assert {"--fp16", "--tf32"} <= set(poly) and "--strongly-typed" not in poly
    assert poly[poly.index("--precision-constraints") + 1] == "obey"
    assert poly[poly.index("--trt-min-shapes") + 1] == "pixels:[1,3,1024,1024]"
    assert poly[poly.index("--trt-opt-shapes") + 1] == "pixels:[2,3,1024,1024]"
    assert poly[poly.index("--load-timing-cache") + 1] == timing.split("=", 1)[1]
    assert "norm:float32" in poly and "largest_dim:float32" not in poly
    fe = commands[("fe", "fp16")][0]
    assert "--minShapes=image_embeddings:1x256x64x64,initial_point:1x1x2" in fe
    sa = commands[("sa", "fp16")][0]
    assert "--optShapes=point_coords:1x1478x2,point_labels:1x1478" in sa
    assert "--maxShapes=point_coords:1x4096x2,point_labels:1x4096" in sa
    trtexec32, poly32 = commands[("encoder", "fp32")]
    assert "--noTF32" in trtexec32 and "--fp16" not in trtexec32 and "--tf32" not in poly32
    assert not any(a.startswith("--layerPrecisions") for a in trtexec32)


def test_print_commands_trt11(export_dir, tmp_path, capsys, no_tensorrt):
    cache = tmp_path / "my.timing"
    commands = _commands(capsys, "--model", str(export_dir), "--trt-major", "11",
                         "--timing-cache", str(cache), "--stages", "decoder")
    assert set(commands) == {("decoder", "fp16")}
    trtexec, poly = commands[("decoder", "fp16")]
    assert f"--onnx={export_dir / graph_file('decoder', 'fp16')}" in trtexec
    assert "--stronglyTyped" in trtexec and f"--timingCacheFile={cache}" in trtexec
    assert not {"--fp16", "--precisionConstraints=obey", "--noTF32"} & set(trtexec)
    assert not any(a.startswith(("--layerPrecisions", "--layerOutputTypes")) for a in trtexec)
    assert "--maxShapes=image_embeddings:1x256x64x64,sparse_prompts:1x4097x256" in trtexec
    assert "--strongly-typed" in poly and "--fp16" not in poly and "--layer-precisions" not in poly
    assert str(export_dir / graph_file("decoder", "fp16")) == poly[2]


def test_print_commands_follow_the_installed_tensorrt(export_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("11.1.0.5"))
    trtexec, _ = _commands(capsys, "--model", str(export_dir), "--stages", "sa")[("sa", "fp16")]
    assert "--stronglyTyped" in trtexec


def test_print_commands_trt11_without_fp16_graph(tmp_path, capsys, no_tensorrt):
    model = make_export_folder(tmp_path / "model", precisions=("fp32",), stages=("encoder",))
    assert main(["build", "--model", str(model), "--trt-major", "11", "--print-commands"]) == 2
    assert "--precision fp32 fp16" in _one_error_line(capsys)


def _python(code: str):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                          timeout=120)


def test_build_tool_never_imports_torch(export_dir):
    code = BLOCK_IMPORTS + f"""
from s3pot.runtime.cli import main
assert main(['build', '--model', {str(export_dir)!r}, '--print-commands']) == 0
assert main(['build', '--model', {str(export_dir)!r}]) == 2
assert 'torch' not in sys.modules, 'torch imported'
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert "TensorRT is not installed" in proc.stderr and "trtexec" in proc.stdout


def test_packages_import_without_tensorrt_pycuda_cuda_python_or_torch():
    code = BLOCK_IMPORTS + """
import importlib, pkgutil
import s3pot.export.tensorrt as pkg, s3pot.runtime.cli.build, s3pot.core.sidecar
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):
    importlib.import_module(info.name)
bad = [m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'torch')]
assert not bad, bad
print('ok')
"""
    proc = _python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
