"""Backends load by name, lazily, with the exact install hint when their package is missing."""
from __future__ import annotations

import pytest

from s3pot.core.errors import MissingDependencyError, S3potInputError
from s3pot.runtime import backends


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(S3potInputError, match="expected one of onnxruntime, tensorrt, torch"):
        backends.load_backend_module("tensorflow")


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", ("s3pot.runtime.backends.torch",
                                                    "no_such_package_xyz", "no-such-package-xyz>=1"))
    with pytest.raises(MissingDependencyError, match=r"pip install no-such-package-xyz>=1"):
        backends.load_backend_module("fake")


def test_torch_backend_loads():
    assert backends.load_backend_module("torch").TorchRunner.name == "torch"
