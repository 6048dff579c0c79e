"""The GPU query (cuda-python, then nvidia-smi) and the timing-cache file keyed by it."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

from s3pot.core.errors import NoGpuError
from s3pot.core import gpu as device
from s3pot.core.gpu import GpuInfo, ProbeFailed
from s3pot.export.tensorrt.timing_cache import default_cache_dir, timing_cache_path


def _fake_cudart(monkeypatch, *, name=b"NVIDIA H100 80GB HBM3\0\0\0", major=9, minor=0, err=0):
    error_t = types.SimpleNamespace(cudaSuccess=0)
    props = types.SimpleNamespace(name=name, major=major, minor=minor)
    runtime = types.ModuleType("cuda.bindings.runtime")
    runtime.cudaError_t = error_t
    runtime.cudaGetDevice = lambda: (err, 0)
    runtime.cudaGetDeviceProperties = lambda index: (0, props)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = runtime
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name_, module in (("cuda", cuda), ("cuda.bindings", bindings),
                          ("cuda.bindings.runtime", runtime)):
        monkeypatch.setitem(sys.modules, name_, module)


def test_cuda_python_gives_name_and_compute_capability(monkeypatch):
    _fake_cudart(monkeypatch)
    assert device.cuda_python_gpu() == GpuInfo("NVIDIA H100 80GB HBM3", "9.0", "cuda-python")


def test_cuda_python_error_falls_back_to_nvidia_smi(monkeypatch):
    _fake_cudart(monkeypatch, err=100)
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "NVIDIA A100-SXM4-80GB, 8.0\n", "")

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    smi = lambda: device.nvidia_smi_gpu(run=run, which=lambda name: "/usr/bin/nvidia-smi")
    gpu = device.query_gpu([device.cuda_python_gpu, smi])
    assert gpu == GpuInfo("NVIDIA A100-SXM4-80GB", "8.0", "nvidia-smi")
    assert calls == [["/usr/bin/nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader",
                      "-i", "1"]]


def test_no_gpu_is_one_clear_error_with_every_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    failing = lambda: device.nvidia_smi_gpu(
        run=lambda cmd, **kw: subprocess.CompletedProcess(cmd, 9, "", "NVIDIA-SMI has failed\n"),
        which=lambda name: "/usr/bin/nvidia-smi")
    with pytest.raises(NoGpuError) as info:
        device.query_gpu([device.cuda_python_gpu, failing])
    message = str(info.value)
    assert message.startswith("no NVIDIA GPU found") and "\n" not in message
    assert "cuda-python is not installed" in message and "exited with 9: NVIDIA-SMI has failed" in message


@pytest.mark.parametrize("text", ["", "[N/A]", "Some GPU, [N/A]"])
def test_unreadable_nvidia_smi_output_is_refused(text):
    with pytest.raises(ProbeFailed, match="expected 'NAME, MAJOR.MINOR'"):
        device.parse_nvidia_smi(text)


def test_timing_cache_file_is_keyed_by_gpu_compute_capability_and_version(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "s3pot" / "tensorrt"
    path = timing_cache_path(GpuInfo("NVIDIA H100 80GB HBM3", "9.0"), "10.16.0.1")
    assert path == tmp_path / "s3pot" / "tensorrt" / "NVIDIA_H100_80GB_HBM3-sm90-trt10.16.0.1.timing"
    others = {timing_cache_path(GpuInfo("NVIDIA H100 80GB HBM3", "9.0"), "11.1.0.5"),
              timing_cache_path(GpuInfo("NVIDIA H100 PCIe", "9.0"), "10.16.0.1"),
              timing_cache_path(GpuInfo("NVIDIA H100 80GB HBM3", "8.9"), "10.16.0.1")}
    assert len(others) == 3 and path not in others
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "s3pot" / "tensorrt"
