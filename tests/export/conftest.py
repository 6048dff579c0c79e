"""Fixtures of the TensorRT builder tests: a hand-made export folder (small graphs named by the IO
table, fp32 and fp16) and a private cache home, so no test reads or writes the user's cache."""
from __future__ import annotations

import pytest

from fake_tensorrt import make_export_folder


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """One export folder (fp32 + mixed-precision fp16 graphs of every stage), shared read-only."""
    return make_export_folder(tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"
