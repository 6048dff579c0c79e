"""Shared fixtures: tiny models of the real architecture, real face photos, the official oracle."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # tests/oracle.py, tests/helpers.py

#: Public-domain face photos (see faces/SOURCE.md), kept in the repository so no test depends
#: on files outside it.
FACES = TESTS / "faces"


def _has_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if item.get_closest_marker("gpu"):  # a keyword match would catch a parameter id "gpu"
            item.add_marker(skip)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FACES


@pytest.fixture(scope="session")
def tiny_model():
    """The ``tiny`` variant with seeded random weights (shared; do not mutate)."""
    from s3pot.models import build_s3pot
    return build_s3pot("tiny", random_weights=True, seed=0)


@pytest.fixture(scope="session")
def tiny_export_dir(tmp_path_factory):
    """``s3pot export --variant tiny --random-weights --seed 3`` (fp32 and fp16; checked by the
    exporter itself). Tests that change files copy it first."""
    from helpers import TINY_EXPORT_SEED as EXPORT_SEED
    from s3pot.runtime.cli import main

    out = tmp_path_factory.mktemp("runtime-export") / "tiny"
    assert main(["export", "--variant", "tiny", "--random-weights", "--seed", str(EXPORT_SEED),
                 "--precision", "fp32", "fp16", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_torch_model():
    """The model the tiny export was made from."""
    from helpers import TINY_EXPORT_SEED as EXPORT_SEED
    from s3pot.models import build_s3pot

    return build_s3pot("tiny", random_weights=True, seed=EXPORT_SEED)
