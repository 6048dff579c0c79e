"""`s3pot fit-image`: the adapter fitted to one real photo, with the paper's early stop; its mask
and its adapter written, the mask being the runtime's with that adapter."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from helpers import astronaut_sample
from s3pot.models import build_s3pot
from s3pot.models.checkpoint import read_adapter, save_adapter
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
    assert 1 <= fit["steps"] <= 4 and len(fit["losses"]) == fit["steps"] + 1
    assert fit["best_loss"] == min(row["total"] for row in fit["losses"]) < fit["losses"][0]["total"]
    adapter = read_adapter(out / "astronaut_adapter.pt")
    assert adapter["variant"] == "tiny" and adapter["meta"]["mode"] == "per-image"
    assert adapter["meta"]["best_step"] == fit["best_step"] and adapter["fe"] is None
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
    # The starting weights set the best loss; no later one beats it by 100, so the losses after
    # steps 1 and 2 end the fit, and the starting weights are the ones kept.
    assert (fit["steps"], fit["best_step"], fit["stopped_early"]) == (2, 0, True)
    assert fit["best_loss"] == fit["losses"][0]["total"]
    start = build_s3pot("tiny", random_weights=True, seed=0).sa.state_dict()
    kept = read_adapter(out / "astronaut_adapter.pt")["sa"]
    assert all(torch.equal(kept[name], tensor) for name, tensor in start.items())


def test_the_last_step_can_be_the_one_kept(sample, tmp_path):
    out = tmp_path / "fit"
    assert main(["fit-image", *sample, "--out", str(out), "--epochs", "1", "--lr", "1e-3", *TINY]) == 0
    fit = json.loads((out / "astronaut_fit.json").read_text())
    assert fit["steps"] == 1 and len(fit["losses"]) == 2  # before and after the one step
    assert fit["losses"][1]["total"] < fit["losses"][0]["total"] and fit["best_step"] == 1
    start = build_s3pot("tiny", random_weights=True, seed=0).sa.state_dict()
    kept = read_adapter(out / "astronaut_adapter.pt")["sa"]
    assert not all(torch.equal(kept[name], tensor) for name, tensor in start.items())


def test_fine_tuned_fe_weights_of_the_starting_adapter_are_kept(sample, tmp_path):
    """FE does not train, but the prompts SA learns from are FE's: an adapter that brought its
    own FE weights must leave with them."""
    model = build_s3pot("tiny", random_weights=True, seed=0)
    with torch.no_grad():
        model.fe.iou_token.weight.add_(0.5)
    start = save_adapter(tmp_path / "start.pt", model, variant="tiny", normalization="sam",
                         face_set="paper", include_fe=True)
    out = tmp_path / "fit"
    assert main(["fit-image", *sample, "--out", str(out), "--epochs", "1", "--adapter", str(start),
                 *TINY]) == 0
    fitted = read_adapter(out / "astronaut_adapter.pt")
    assert fitted["fe"] is not None
    assert all(torch.equal(fitted["fe"][name], tensor) for name, tensor in model.fe.state_dict().items())


def test_bad_options_and_inputs_are_one_line(sample, tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(["fit-image", *sample, "--out", str(out), "--patience", "0", *TINY]) == 2
    assert "--patience: expected an integer >= 1, got 0" in capsys.readouterr().err
    missing = list(sample)
    missing[1] = str(tmp_path / "nope.png")
    assert main(["fit-image", *missing, "--out", str(out), *TINY]) == 2
    assert "image '" in capsys.readouterr().err and not out.exists()
