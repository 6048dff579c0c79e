"""`s3pot train` on the tiny variant over a small dataset built from real face photos (pasted
occluders, the clean photos as references, parsing maps drawn with SPEC's labels): the loss goes
down, the adapter reloads to the same output and exports to the same mask, a stopped run resumes
to the same weights, and the encoder runs once per image."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from helpers import occluded_face_dataset, run_both_backends
from s3pot.models import build_s3pot
from s3pot.models.checkpoint import read_adapter, read_state_dict
from s3pot.runtime.cli import main
from s3pot.training.steps import sample_loss
from s3pot.training.trainer import TrainConfig, Trainer

TINY = ["--variant", "tiny", "--random-weights", "--seed", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return occluded_face_dataset(tmp_path_factory.mktemp("train") / "data")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One embedding cache for the CLI runs of this module (each run encodes nothing new)."""
    return tmp_path_factory.mktemp("train") / "embeddings"


def _train(dataset, out, cache, *extra) -> int:
    return main(["train", "--data", str(dataset), "--val", str(dataset), "--out", str(out),
                 "--cache", str(cache), "--epochs", "3", "--batch", "2", "--lr", "1e-3", *TINY,
                 *extra])


@pytest.fixture(scope="module")
def run(dataset, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    assert _train(dataset, out, cache) == 0
    return out


def test_training_lowers_the_loss_and_writes_its_files(run):
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    before, after = history[0], history[-1]
    assert after["train"]["total"] < before["train"]["total"]  # mean over the epoch's steps
    assert after["val"]["total"] < before["val"]["total"]  # the same samples, final weights
    assert 0.0 <= after["val"]["mean_iou"] <= 1.0 and after["val"]["images_with_gt"] == 4
    assert history[1]["lr"] == pytest.approx(1e-3) and history[-1]["lr"] < 1e-3  # cosine decay
    assert (run / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    adapter = read_adapter(run / "adapter.pt")
    assert (adapter["variant"], adapter["normalization"], adapter["face_set"]) == ("tiny", "sam", [1, 2, 3, 5, 6, 9])
    assert adapter["meta"]["mode"] == "standard" and adapter["meta"]["epoch"] == 3
    assert adapter["meta"]["sam_weights"] == {"random_weights": True, "seed": 0}
    assert adapter["fe"] is None  # FE is not trained


def test_the_encoder_runs_once_per_image_and_the_adapter_reloads_to_the_same_output(dataset, tmp_path):
    model = build_s3pot("tiny", random_weights=True, seed=0)
    calls: list[int] = []
    model.image_encoder.register_forward_hook(lambda m, inputs, out: calls.append(len(inputs[0])))
    config = TrainConfig(epochs=2, batch=2, lr=1e-3)
    trainer = Trainer(model, variant="tiny", normalization="sam", face_set=(1, 2, 3, 5, 6, 9),
                      config=config, device=torch.device("cpu"), cache_dir=tmp_path / "cache",
                      weights={"random_weights": True, "seed": 0})
    trainer.load_data(dataset)
    trainer.fit(tmp_path / "out")
    assert sum(calls) == 8 and trainer.cache.stats.encoded == 8  # 4 images, 4 references, 2 epochs
    sample = trainer.train_set.samples[0]
    with torch.no_grad():
        _, trained_logits = sample_loss(model, trainer.embedding(sample), sample.prompts)
    trainer.close()

    reloaded = build_s3pot("tiny", random_weights=True, seed=0, adapter=tmp_path / "out" / "adapter.pt")
    with torch.no_grad():
        _, reloaded_logits = sample_loss(reloaded, trainer.embedding(sample), sample.prompts)
    assert torch.equal(trained_logits, reloaded_logits)

    again = Trainer(build_s3pot("tiny", random_weights=True, seed=0), variant="tiny",
                    normalization="sam", face_set=(1, 2, 3, 5, 6, 9), config=config,
                    device=torch.device("cpu"), cache_dir=tmp_path / "cache", weights={})
    again.load_data(dataset)
    assert again.cache.stats.encoded == 0 and again.cache.stats.hits == 8
    again.close()


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(run, dataset, cache, tmp_path,
                                                                      monkeypatch, capsys):
    original = Trainer.train_epoch

    def stop_in_epoch_3(self, epoch):
        """Interrupt epoch 3 after its first step: the weights in memory have moved past the
        saved state of epoch 2."""
        if epoch == 3:
            step = self.scheduler.step

            def step_then_stop():
                step()
                raise KeyboardInterrupt
            self.scheduler.step = step_then_stop
        return original(self, epoch)

    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", stop_in_epoch_3)
        assert _train(dataset, out, cache) == 130
    assert "epochs 1-2 are saved" in capsys.readouterr().err
    assert read_state_dict(out / "state.pt")["epoch"] == 2
    assert _train(dataset, out, cache, "--resume") == 0
    resumed, uninterrupted = read_adapter(out / "adapter.pt"), read_adapter(run / "adapter.pt")
    for name, tensor in uninterrupted["sa"].items():
        assert torch.equal(resumed["sa"][name], tensor), name
    resumed_rows, rows = (json.loads((folder / "history.json").read_text()) for folder in (out, run))
    for key in ("epoch", "lr", "train", "val"):  # everything but the seconds
        assert [row[key] for row in resumed_rows] == [row[key] for row in rows], key


def test_resume_refuses_other_settings(run, dataset, cache, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(run, out)
    assert _train(dataset, out, cache, "--resume", "--lr", "5e-4") == 2
    err = capsys.readouterr().err
    assert "expected the run it continues to have the same settings and data, got config" in err
    assert '"lr": 0.001' in err and '"lr": 0.0005' in err


def test_overwrite_starts_over_and_keeps_the_cache(run, dataset, cache, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(run, out)
    assert _train(dataset, out, cache, "--overwrite", "--epochs", "1") == 0
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    assert read_state_dict(out / "state.pt")["config"]["epochs"] == 1


def test_the_run_folder_rules(run, dataset, cache, tmp_path, capsys):
    assert _train(dataset, run, cache) == 2
    assert "continue its run with --resume, or start over with --overwrite" in capsys.readouterr().err
    assert _train(dataset, tmp_path / "new", cache, "--resume") == 2
    assert "state.pt' from an earlier run, got no such file" in capsys.readouterr().err
    assert _train(dataset, run, cache, "--resume", "--overwrite") == 2
    assert "expected one of them, got both" in capsys.readouterr().err
    assert _train(dataset, tmp_path / "new", cache, "--epochs", "0") == 2
    assert "--epochs: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert _train(dataset, tmp_path / "new", cache, "--seed", "-1") == 2
    assert "--seed: expected an integer >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_bad_sample_stops_the_run_before_the_encoder_runs(dataset, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    np.save(data / "biden_parsing_mask.npy", np.zeros((400, 400), np.uint8))  # background only
    (data / "astronaut.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "--data '" in err and "2 that are not" in err
    assert "astronaut: image '" in err and "biden: parsing mask '" in err
    assert not out.exists()


def test_a_trained_adapter_exported_to_onnx_gives_the_trained_mask(run, tmp_path):
    export = tmp_path / "export"
    adapter = run / "adapter.pt"
    assert main(["export", "--variant", "tiny", "--random-weights", "--seed", "0", "--adapter",
                 str(adapter), "--out", str(export)]) == 0
    found = run_both_backends(export, ["--variant", "tiny", "--random-weights", "--seed", "0",
                                       "--adapter", str(adapter)], tmp_path)
    assert found["same_prompts"] and found["iou"] >= 0.999


def test_the_authors_dataset_layout_trains_with_labelme_ground_truth(dataset, cache, tmp_path):
    """One numbered folder per sample (a .jpg, a Reference*.png, a *parsing_mask.npy and a LabelMe
    .json of the occluder), the layout of the authors' dataset."""
    import cv2

    folders = tmp_path / "folders"
    for index, name in enumerate(("obama", "astronaut"), start=1):
        sample = folders / str(index)
        sample.mkdir(parents=True)
        image = cv2.imread(str(dataset / f"{name}.png"))
        cv2.imwrite(str(sample / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        shutil.copy(dataset / f"{name}_ref.png", sample / "Reference_0.png")
        shutil.copy(dataset / f"{name}_parsing_mask.npy", sample / f"{name}_parsing_mask.npy")
        ys, xs = np.nonzero(cv2.imread(str(dataset / f"{name}_gt.png"), cv2.IMREAD_GRAYSCALE))
        box = [[float(xs.min()), float(ys.min())], [float(xs.max() + 1), float(ys.max() + 1)]]
        (sample / f"{name}.json").write_text(json.dumps({
            "shapes": [{"label": "occlusion", "shape_type": "rectangle", "points": box}],
            "imageHeight": image.shape[0], "imageWidth": image.shape[1]}))
    out = tmp_path / "run"
    assert main(["train", "--data", str(folders), "--val", str(folders), "--out", str(out),
                 "--cache", str(cache), "--epochs", "1", *TINY]) == 0
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["val"]["images_with_gt"] == 2 and 0.0 <= history[-1]["val"]["mean_iou"] <= 1.0
