"""Standard training: one SA layer over a training set, with the paper's settings by default
(AdamW, learning rate 1e-4 with cosine decay over every step, batch 3, 50 epochs).

A run writes into its output folder, each file atomically, after every epoch:

- ``adapter.pt``, the SA weights in the adapter format (:mod:`s3pot.models.checkpoint`). It
  records the variant, normalisation and face set, and goes straight into ``s3pot export
  --adapter`` and ``s3pot segment --adapter``.
- ``state.pt``, what ``--resume`` continues from: SA, optimizer and scheduler state, the epoch,
  PyTorch's RNG, the history, the settings and the data's digest. Settings or data that differ
  are refused.
- ``history.json`` and ``curve.png``: the losses per epoch (training and validation) and, where
  the validation set has ground truth, its occlusion IoU. Epoch 0 is the model before training.

The sample order of epoch ``e`` is a permutation drawn from ``(seed, e)``. A run that stops and
resumes therefore ends with the weights of an uninterrupted run, bit for bit.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from s3pot.core.atomic import write_bytes_atomic
from s3pot.core.errors import CheckpointError, S3potError, S3potInputError
from s3pot.models.checkpoint import read_state_dict, save_adapter
from s3pot.models.losses import ALPHA, LAMBDA
from s3pot.runtime.metrics import score, summarize
from s3pot.runtime.preprocess import postprocess_logits

from .data import SampleSet, TrainSample, load_sample_set, prepare_sample
from .embeddings import EmbeddingCache
from .options import check_settings
from .steps import carries_fe, make_trainable, sample_loss, torch_runner

log = logging.getLogger(__name__)

ADAPTER_FILE = "adapter.pt"
STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
CURVE_FILE = "curve.png"
CACHE_FOLDER = "embeddings"
STATE_FORMAT = "s3pot-train-state"
STATE_VERSION = 1
TERMS = ("total", "occ", "face", "pen")


@dataclass(frozen=True)
class TrainConfig:
    """The settings of a run; a resumed run must have the same."""

    epochs: int = 50
    batch: int = 3
    lr: float = 1e-4
    weight_decay: float = 0.01
    seed: int = 0
    alpha: float = ALPHA
    lam: float = LAMBDA

    def check(self) -> "TrainConfig":
        check_settings(self, (("epochs", self.epochs >= 1, "an integer >= 1"),
                              ("batch", self.batch >= 1, "an integer >= 1"),
                              ("seed", self.seed >= 0, "an integer >= 0")))
        return self


def mean_terms(rows: list[dict]) -> dict:
    return {name: float(np.mean([row[name] for row in rows])) for name in TERMS} if rows else {}


class Trainer:
    """Trains ``model``'s SA layer on a sample set (see the module notes).

    Args:
        model: an :class:`~s3pot.models.S3POT` (SAM weights and, optionally, an adapter loaded).
        variant, normalization, face_set: what the model is and runs with; recorded in the adapter.
        config: the run's settings.
        device: a ``torch.device``.
        cache_dir: the embedding cache (:mod:`.embeddings`).
        weights: a JSON-like description of the SAM weights (recorded in the adapter).
        selector: the prompt-selection kernel (default: the fast CPU kernel).
        progress: show progress bars on stderr.
    """

    def __init__(self, model, *, variant: str, normalization: str, face_set, config: TrainConfig,
                 device: torch.device, cache_dir, weights: dict, selector: str = "auto",
                 progress: bool = False) -> None:
        self.config = config.check()
        self.variant, self.normalization, self.face_set = variant, normalization, tuple(face_set)
        self.device, self.weights, self.selector, self.progress = device, weights, selector, progress
        self.model = model.to(device)
        params = make_trainable(self.model)
        self.runner = torch_runner(self.model, device, variant, normalization)
        self.cache = EmbeddingCache(cache_dir, self.model, variant, device)
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = None
        self.train_set: SampleSet | None = None
        self.val_set: SampleSet | None = None
        self.history: list[dict] = []
        self.epoch = 0
        self.prepare_seconds = 0.0

    # -- data ----------------------------------------------------------------------------------
    def load_data(self, train_root, val_root=None) -> None:
        """Check, encode (or read from the cache) and prompt the training and validation sets."""
        start = time.perf_counter()
        sets = [("--data", train_root)] + ([("--val", val_root)] if val_root is not None else [])
        loaded = []
        for what, root in sets:
            loaded.append(load_sample_set(
                root, self.cache, self.runner, normalization=self.normalization,
                face_set=self.face_set, selector=self.selector, what=what,
                progress=functools.partial(self._bar, f"encoding {what[2:]}")))
        self.train_set = loaded[0]
        self.val_set = loaded[1] if len(loaded) > 1 else None
        steps = self.config.epochs * math.ceil(len(self.train_set) / self.config.batch)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)
        self.prepare_seconds = time.perf_counter() - start

    def _bar(self, desc: str, items=None, *, total: int | None = None):
        """A progress bar over samples on stderr (off unless ``progress``)."""
        from tqdm import tqdm

        return tqdm(items, total=total, desc=desc, unit="sample", file=sys.stderr, leave=False,
                    disable=not self.progress)

    def embedding(self, sample: TrainSample) -> torch.Tensor:
        """The image's ``256 x 64 x 64`` embedding on the device (re-encoded if its cache entry
        went missing during the run)."""
        array = self.cache.load(sample.image_key)
        if array is None:
            prepared = prepare_sample(sample.files, self.normalization, self.face_set)
            array = self.cache.fetch([prepared.pixels[0]], [sample.image_key])[0]
        return torch.from_numpy(array).to(self.device)

    # -- one epoch -----------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        """One pass over the training set in the order drawn from ``(seed, epoch)``; returns the
        mean loss terms over its samples (each taken before its batch's step)."""
        samples = self.train_set.samples
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(samples))
        rows = []
        with self._bar(f"epoch {epoch}/{self.config.epochs}", total=len(samples)) as bar:
            for begin in range(0, len(order), self.config.batch):
                batch = order[begin:begin + self.config.batch]
                self.optimizer.zero_grad(set_to_none=True)
                for index in batch:
                    sample = samples[index]
                    terms, _ = sample_loss(self.model, self.embedding(sample), sample.prompts,
                                           alpha=self.config.alpha, lam=self.config.lam)
                    rows.append(terms.as_floats())
                    if not math.isfinite(rows[-1]["total"]):
                        self._diverged(epoch, f"sample {sample.name}: loss {rows[-1]['total']}")
                    if terms.total.requires_grad:  # both prompt sets empty: nothing to learn
                        (terms.total / len(batch)).backward()
                    bar.update(1)
                    bar.set_postfix(loss=f"{rows[-1]['total']:.4f}")
                self.optimizer.step()
                self.scheduler.step()
                if not all(torch.isfinite(p).all() for p in self.model.sa.parameters()):
                    self._diverged(epoch, "the SA weights after a step are not finite")
        return mean_terms(rows)

    def _diverged(self, epoch: int, what: str) -> None:
        saved = (f"epochs up to {self.epoch} are saved, and --resume continues from there"
                 if self.epoch else "nothing was saved")
        raise S3potError(f"epoch {epoch}: expected finite values, got {what}: training diverged "
                         f"({saved}; start over with a smaller --lr and --overwrite)")

    @torch.no_grad()
    def evaluate(self, sample_set: SampleSet) -> dict:
        """Mean loss terms over ``sample_set`` with the current weights and, over its samples
        with ground truth, the occlusion IoU (mean over images and pooled)."""
        rows, scores = [], []
        for sample in sample_set.samples:
            terms, logits = sample_loss(self.model, self.embedding(sample), sample.prompts,
                                        alpha=self.config.alpha, lam=self.config.lam)
            rows.append(terms.as_floats())
            truth = sample.ground_truth()
            if truth is not None:
                predicted = postprocess_logits(logits.float().cpu().numpy(), sample.input_size) > 0
                scores.append(score(sample.name, predicted, truth))
        result = mean_terms(rows)
        if scores:
            summary = summarize(scores, [])
            result.update(mean_iou=summary["mean_iou"], pooled_iou=summary["pooled_iou"],
                          images_with_gt=summary["images"])
        return result

    # -- the run -------------------------------------------------------------------------------
    def fit(self, out, *, resume: bool = False, report=None) -> list[dict]:
        """Train from the next epoch to ``config.epochs``, saving into ``out`` after each epoch;
        with ``resume``, continue from ``out``'s state. ``report(line)`` gets one line per epoch."""
        out = Path(out)
        if self.train_set is None:
            raise S3potInputError("trainer: load_data must run before fit")
        if resume:
            self.restore(out / STATE_FILE)
        elif not self.history:
            self.history.append({"epoch": 0, "lr": self.optimizer.param_groups[0]["lr"],
                                 "train": self.evaluate(self.train_set),
                                 "val": self.evaluate(self.val_set) if self.val_set else None,
                                 "seconds": 0.0, "prepare_seconds": self.prepare_seconds})
            if report:
                report(self.describe(self.history[-1]))
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_epoch(epoch)
            seconds = time.perf_counter() - start
            val = self.evaluate(self.val_set) if self.val_set else None
            self.history.append({"epoch": epoch, "lr": lr, "train": train, "val": val,
                                 "seconds": seconds,
                                 "seconds_per_sample": seconds / len(self.train_set)})
            self.epoch = epoch
            self.save(out)
            if report:
                report(self.describe(self.history[-1]))
        return self.history

    @staticmethod
    def describe(row: dict) -> str:
        text = f"epoch {row['epoch']}: train loss {row['train']['total']:.4f}"
        if row.get("val"):
            text += f", val loss {row['val']['total']:.4f}"
            if "mean_iou" in row["val"]:
                text += f", val IoU {row['val']['mean_iou']:.4f}"
        if row["epoch"]:
            text += f" ({row['seconds']:.1f} s, {row['seconds_per_sample']:.3f} s/sample)"
        return text

    # -- files ---------------------------------------------------------------------------------
    def _identity(self, with_data: bool = True) -> dict:
        """What a resumed run must share with the run it continues (the data only once loaded)."""
        identity = {"variant": self.variant, "normalization": self.normalization,
                    "face_set": list(self.face_set), "encoder": self.cache.fingerprint,
                    "config": asdict(self.config)}
        if with_data:
            identity.update(data=self.train_set.digest,
                            val=self.val_set.digest if self.val_set else None)
        return identity

    def check_resume(self, path: Path) -> dict:
        """The state file at ``path``, refused unless it was written by a run of the same model
        and settings; cheap, so a resume with a changed option fails before the data is encoded."""
        state = read_state_dict(path, "training state")
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise CheckpointError(f"training state '{path}': expected a {STATE_FORMAT} file of "
                                  f"version {STATE_VERSION}, got format {state.get('format')!r} "
                                  f"version {state.get('version')!r}")
        self._compare(path, state, self._identity(with_data=self.train_set is not None))
        return state

    @staticmethod
    def _compare(path: Path, state: dict, mine: dict) -> None:
        differ = [name for name in mine if state.get(name) != mine[name]]
        if not differ:
            return

        def show(value):
            text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
            return text if len(text) <= 80 else text[:77] + "..."
        details = "; ".join(f"{name}: {show(state.get(name))} then, {show(mine[name])} now"
                            for name in differ)
        raise CheckpointError(f"training state '{path}': expected the run it continues to "
                              f"have the same settings and data, got {details} (start a new "
                              "run with --overwrite, or another --out)")

    def save(self, out: Path) -> None:
        """Adapter, history, curve and resume state of the current epoch, each atomically (the
        state last, so a state never points past the other files)."""
        from .curve import plot_history

        last = self.history[-1]
        save_adapter(out / ADAPTER_FILE, self.model, variant=self.variant,
                     normalization=self.normalization, face_set=self.face_set,
                     include_fe=carries_fe(self.model),
                     meta={"mode": "standard", "epoch": self.epoch, "epochs": self.config.epochs,
                           "config": asdict(self.config), "sam_weights": self.weights,
                           "data": str(self.train_set.root), "samples": len(self.train_set),
                           "train_loss": last["train"].get("total"),
                           "val": last["val"]})
        write_bytes_atomic(out / HISTORY_FILE, json.dumps(self.history, indent=1).encode())
        plot_history(self.history, out / CURVE_FILE,
                     title=f"s3pot train: {self.variant}, {len(self.train_set)} samples")
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, **self._identity(),
                 "epoch": self.epoch, "history": self.history,
                 "sa": {k: v.detach().cpu() for k, v in self.model.sa.state_dict().items()},
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes_atomic(out / STATE_FILE, buffer.getvalue())

    def restore(self, path: Path) -> None:
        """Continue from a state file written by :meth:`save` for the same settings and data."""
        state = self.check_resume(path)
        self.model.sa.load_state_dict(state["sa"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.history, self.epoch = list(state["history"]), int(state["epoch"])
        log.info("resuming %s after epoch %d of %d", path, self.epoch, self.config.epochs)

    def close(self) -> None:
        self.runner.deactivate()
