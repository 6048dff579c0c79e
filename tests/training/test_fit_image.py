"""`s3pot fit-image`: the adapter fitted to one real photo, with the paper's early stop; its mask
and its adapter written, the mask being the runtime's with that adapter."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from helpers import astronaut_sample
from s3pot.models.checkpoint import read_adapter
from s3pot.runtime.cli import main

TINY = ["--variant", "tiny", "--random-weights", "--seed", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    image, reference, parsing = astronaut_sample()
    cv2.imwrite(str(root / "astronaut.png"), image[..., ::-1])
    cv2.imwrite(str(root / "astronaut_ref.png"), reference[..., ::-1])
    np.save(root / "astronaut_parsing_mask.npy", parsing)
    return ["--image", str(root / "astronaut.png"), "--reference", str(root / "astronaut_ref.png"),
            "--parsing", str(root / "astronaut_parsing_mask.npy")]


def _mask(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED) > 0


def test_fit_writes_the_mask_and_the_adapter_that_gives_it(sample, tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(["fit-image", *sample, "--out", str(out), "--epochs", "4", "--lr", "1e-3", *TINY]) == 0
    assert "astronaut: " in capsys.readouterr().out
    fit = json.loads((out / "astronaut_fit.json").read_text())
    assert 1 <= fit["epochs_run"] <= 4 and len(fit["losses"]) == fit["epochs_run"]
    assert fit["best_loss"] == min(row["total"] for row in fit["losses"]) < fit["losses"][0]["total"]
    adapter = read_adapter(out / "astronaut_adapter.pt")
    assert adapter["variant"] == "tiny" and adapter["meta"]["mode"] == "per-image"
    assert adapter["meta"]["best_epoch"] == fit["best_epoch"]
    # The runtime with the fitted adapter draws the same mask.
    again = tmp_path / "segment"
    assert main(["segment", *sample, "--backend", "torch", "--adapter", str(out / "astronaut_adapter.pt"),
                 "--out", str(again), *TINY]) == 0
    np.testing.assert_array_equal(_mask(out / "astronaut_occlusion.png"),
                                  _mask(again / "astronaut_occlusion.png"))
    prompts = [json.loads((folder / "astronaut_prompts.json").read_text()) for folder in (out, again)]
    assert prompts[0]["occlusion_tokens"] == prompts[1]["occlusion_tokens"]


def test_it_stops_after_patience_epochs_without_a_drop_of_min_delta(sample, tmp_path):
    out = tmp_path / "fit"
    assert main(["fit-image", *sample, "--out", str(out), "--epochs", "50", "--patience", "2",
                 "--min-delta", "100", *TINY]) == 0
    fit = json.loads((out / "astronaut_fit.json").read_text())
    # Epoch 1 sets the best loss; no later one beats it by 100, so epochs 2 and 3 end the fit
    # and the weights of epoch 1 (the initial ones) are kept.
    assert (fit["epochs_run"], fit["best_epoch"], fit["stopped_early"]) == (3, 1, True)
    assert fit["best_loss"] == fit["losses"][0]["total"]


def test_bad_options_and_inputs_are_one_line(sample, tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(["fit-image", *sample, "--out", str(out), "--patience", "0", *TINY]) == 2
    assert "--patience: expected an integer >= 1, got 0" in capsys.readouterr().err
    missing = list(sample)
    missing[1] = str(tmp_path / "nope.png")
    assert main(["fit-image", *missing, "--out", str(out), *TINY]) == 2
    assert "image '" in capsys.readouterr().err and not out.exists()
