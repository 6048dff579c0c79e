"""Packaging: a plain (non-editable) install works from another directory and puts nothing but
``s3pot/`` at the top of site-packages; every submodule imports without optional GPU packages."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "export", "runtime", "kernels", "models", "benchmarks", "training", "frontend")


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build must not touch the working tree)."""
    work = tmp_path_factory.mktemp("build")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "out", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(work / "dist"), str(src)])
    return next((work / "dist").glob("s3pot_rt-*.whl"))


def test_wheel_holds_only_the_s3pot_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"s3pot"}
    sources = {f"s3pot/{p.relative_to(ROOT).as_posix()}" for folder in FOLDERS
               for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts}
    assert sources and sources <= set(names), sorted(sources - set(names))
    assert "s3pot/__init__.py" not in names  # a namespace package, shareable by future plugins
    models = {f"s3pot/frontend/models/{p.name}" for p in (ROOT / "frontend" / "models").iterdir()}
    assert any(m.endswith(".tflite") for m in models) and models <= set(names)


def test_fresh_venv_install_imports_from_elsewhere(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    for generic in FOLDERS:
        assert not (site / generic).exists(), f"top-level {generic} installed"
    assert (site / "s3pot" / "models" / "__init__.py").is_file()
    # The fresh venv has the package but not its dependencies: borrow ours through a .pth file,
    # which puts them after the venv's own site-packages (PYTHONPATH would put them first, and
    # where this project is installed there too, shadow the fresh install). Run from elsewhere.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "borrowed_dependencies.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import importlib, pkgutil, s3pot.models, s3pot.runtime, s3pot.kernels, s3pot.export\n"
            "print(s3pot.models.__file__)\n"
            "for pkg in (s3pot.models, s3pot.runtime, s3pot.kernels, s3pot.export):\n"
            "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(info.name)\n")
    out = _run([str(py), "-c", code], cwd=tmp_path, env=env).stdout
    assert str(site) in out and str(ROOT) not in out.splitlines()[0]
    exe = venv / "bin" / "s3pot"
    assert exe.is_file()
    assert "vit_b" in _run([str(exe), "variants"], cwd=tmp_path, env=env).stdout


def test_every_submodule_imports_without_gpu_packages():
    """tensorrt, pycuda, cuda-python and LiteRT are blocked; every module must still import."""
    code = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'polygraphy', 'ai_edge_litert'):
            raise ImportError(f'blocked {name}')
sys.meta_path.insert(0, Block())
import s3pot
failed = []
for folder in ('core', 'kernels', 'models', 'runtime', 'export', 'benchmarks', 'training', 'frontend'):
    pkg = importlib.import_module(f's3pot.{folder}')
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f's3pot.{folder}.'):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f'{info.name}: {exc!r}')
print('\n'.join(failed))
assert not failed
"""
    _run([sys.executable, "-c", code], cwd="/")


def test_runtime_core_imports_without_torch():
    """The lean runtime: pipeline, preprocessing, I/O, kernels, the ONNX Runtime and TensorRT
    backends, the TensorRT builder, the front end and every CLI tool's module import with torch
    blocked; the tool that needs torch says what to install."""
    code = r"""
import importlib, sys, s3pot.core.errors
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch':
            raise ImportError('blocked torch')
sys.meta_path.insert(0, Block())
import s3pot.runtime.pipeline, s3pot.runtime.preprocess, s3pot.runtime.io, s3pot.runtime.datasets
import s3pot.runtime.visualize, s3pot.runtime.cli, s3pot.kernels
import s3pot.core.io_table, s3pot.core.manifest, s3pot.core.sidecar, s3pot.runtime.backends.onnxruntime
import s3pot.export.tensorrt, s3pot.runtime.cli.build
import s3pot.runtime.backends.base, s3pot.runtime.backends.auto, s3pot.runtime.backends.tensorrt
import s3pot.models.registry, s3pot.runtime.backends.openvino, s3pot.benchmarks.bench, s3pot.benchmarks.report
import s3pot.frontend.faces, s3pot.frontend.references, s3pot.frontend.video
from s3pot.runtime.cli import TOOLS, build_parser, tool_module
NEED_TORCH = {'export': "'s3pot-rt[torch]'", 'train': "'s3pot-rt[torch,train]'",
              'fit-image': "'s3pot-rt[torch,train]'"}  # their options come from torch modules
for tool in TOOLS:
    tool_module(tool)
    if tool not in NEED_TORCH:
        build_parser(only=tool)
for tool, extra in NEED_TORCH.items():
    try:
        build_parser(only=tool)
    except s3pot.core.errors.MissingDependencyError as exc:
        assert f"pip install {extra}" in str(exc), exc
    else:
        raise AssertionError(f'{tool} without torch did not say what to install')
assert 'torch' not in sys.modules
"""
    _run([sys.executable, "-c", code], cwd="/")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> Path:
    from s3pot.runtime.cli import main

    out = tmp_path_factory.mktemp("lean") / "tiny"
    assert main(["export", "--variant", "tiny", "--random-weights", "--seed", "5", "--out",
                 str(out), "--no-verify"]) == 0
    return out


def test_base_install_without_torch_segments_with_onnxruntime(wheel, tiny_export, tmp_path):
    """The base package (README: `pip install .`) in a fresh virtual environment, with its own
    dependencies from the package index and no torch, runs an exported model."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py, exe = venv / "bin" / "python", venv / "bin" / "s3pot"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], env=env)
    missing = _run([str(py), "-c", "import importlib.util as u; print([m for m in "
                    "('torch', 'onnx', 'tensorrt', 'pycuda', 'cv2', 'onnxruntime') "
                    "if u.find_spec(m) is None])"], env=env).stdout.strip()
    assert missing == "['torch', 'onnx', 'tensorrt', 'pycuda']"
    data = ROOT / "benchmarks" / "data"
    out = tmp_path / "out"
    proc = _run([str(exe), "segment", "--backend", "onnxruntime", "--model", str(tiny_export),
                 "--image", str(data / "obama_face.jpg"), "--reference", str(data / "obama_face_ref.jpg"),
                 "--parsing", str(data / "obama_face_parsing_mask.npy"), "--out", str(out)],
                cwd=tmp_path, env=env)
    assert sorted(p.name for p in out.iterdir()) == [
        "obama_face_occlusion.png", "obama_face_prompts.json", "obama_face_visible_face.png"]
    assert "onnxruntime" in proc.stderr and "CPUExecutionProvider" in proc.stderr
    # the tools that need torch say what to install, in one line
    proc = subprocess.run([str(exe), "export", "--variant", "tiny", "--random-weights", "--out",
                           str(tmp_path / "x")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "pip install" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
