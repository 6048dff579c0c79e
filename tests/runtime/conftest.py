"""Fixtures of the runtime tests: one tiny export folder shared by the backend tests."""
from __future__ import annotations

import pytest

from helpers import TINY_EXPORT_SEED as EXPORT_SEED


@pytest.fixture(scope="session")
def tiny_export_dir(tmp_path_factory):
    """``s3pot export --variant tiny --random-weights --seed 3`` (fp32 and fp16; checked by the
    exporter itself). Tests that change files copy it first."""
    from s3pot.runtime.cli import main

    out = tmp_path_factory.mktemp("runtime-export") / "tiny"
    assert main(["export", "--variant", "tiny", "--random-weights", "--seed", str(EXPORT_SEED),
                 "--precision", "fp32", "fp16", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_torch_model():
    """The model the tiny export was made from."""
    from s3pot.models import build_s3pot

    return build_s3pot("tiny", random_weights=True, seed=EXPORT_SEED)
