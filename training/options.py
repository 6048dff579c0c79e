"""What `s3pot train` and `s3pot fit-image` share: the optimiser and objective options, and the
model they train (SAM weights, an optional starting adapter, what it runs with, the device)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from s3pot.core.errors import S3potInputError

#: What training needs beyond the base install.
TRAIN_EXTRA = "'s3pot-rt[torch,train]' (torch, matplotlib)"


def add_objective_options(parser, *, lr: float, weight_decay: float) -> None:
    """The optimiser's and the objective's options (the latter's defaults are the paper's, read
    from :mod:`s3pot.models.losses`, which needs torch)."""
    from s3pot.core.errors import require

    require("torch", TRAIN_EXTRA)
    from s3pot.models.losses import ALPHA, LAMBDA

    group = parser.add_argument_group("optimisation")
    group.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate, decayed by a "
                       f"cosine to 0 (default: {lr:g}, the paper's)")
    group.add_argument("--weight-decay", type=float, default=weight_decay,
                       help=f"AdamW weight decay (default: {weight_decay:g})")
    group.add_argument("--alpha", type=float, default=ALPHA,
                       help=f"steepness of the face penalty FPP (default: {ALPHA:g})")
    group.add_argument("--lambda", dest="lam", type=float, default=LAMBDA,
                       help=f"weight of FPP in the total loss (default: {LAMBDA:g})")


def check_settings(settings, rules=()) -> None:
    """Refuse the first option out of range, as ``--NAME: expected ..., got ...``: ``rules``
    (``(name, ok, expected)``, the mode's own) and then the optimiser's and the objective's, which
    both modes have (``settings.lr``, ``.weight_decay``, ``.alpha``, ``.lam``)."""
    rules = (*rules,
             ("lr", math.isfinite(settings.lr) and settings.lr > 0, "a number > 0"),
             ("weight-decay", math.isfinite(settings.weight_decay) and settings.weight_decay >= 0,
              "a number >= 0"),
             ("alpha", math.isfinite(settings.alpha) and settings.alpha > 0, "a number > 0"),
             ("lambda", math.isfinite(settings.lam) and settings.lam >= 0, "a number >= 0"))
    for name, ok, expected in rules:
        if not ok:
            value = getattr(settings, "lam" if name == "lambda" else name.replace("-", "_"))
            raise S3potInputError(f"--{name}: expected {expected}, got {value}")


def file_error(exc: OSError, out) -> S3potInputError:
    """A read or write that failed (no space, no permission), naming the file it was."""
    where = f"'{exc.filename}'" if exc.filename else f"--out '{out}'"
    return S3potInputError(f"{where}: could not read or write it ({exc.strerror or exc})")


@dataclass
class TrainedModel:
    """A model ready to train, and what it is."""

    model: object  # s3pot.models.S3POT
    variant: str
    normalization: str
    face_set: tuple[int, ...]
    device: object  # torch.device
    weights: dict  # JSON-like, recorded in the adapter


def build_model(args) -> TrainedModel:
    """The model of the parsed model options (see
    :func:`s3pot.runtime.cli.common.add_model_options`). ``--seed`` seeds the SA layer's
    initial weights (and SAM's, with ``--random-weights``)."""
    from s3pot.core.errors import require
    from s3pot.core.spec import resolve_context
    from s3pot.runtime.backends import ModelSpec
    from s3pot.runtime.cli.common import check_model_files, parse_face_set

    require("torch", TRAIN_EXTRA)
    require("matplotlib", TRAIN_EXTRA)
    from s3pot.runtime.backends.torch.loader import load_model
    from s3pot.runtime.backends.torch.runner import resolve_device

    check_model_files(args)
    device = resolve_device(args.device)
    model, context = load_model(ModelSpec(variant=args.variant, checkpoint=args.checkpoint,
                                          adapter=args.adapter, random_weights=args.random_weights,
                                          seed=args.seed))
    normalization, face_set = resolve_context(args.normalization, parse_face_set(args.face_set),
                                              context.trained, context.normalization)
    weights = ({"checkpoint": str(args.checkpoint)} if args.checkpoint is not None
               else {"random_weights": True, "seed": args.seed})
    if args.adapter is not None:
        weights["initial_adapter"] = str(args.adapter)
    return TrainedModel(model=model, variant=context.variant, normalization=normalization,
                        face_set=tuple(face_set), device=device, weights=weights)


def export_hint(trained: TrainedModel, adapter: Path) -> str:
    """The `s3pot export` command that turns ``adapter`` into ONNX graphs."""
    weights = trained.weights
    source = (f"--checkpoint {weights['checkpoint']}" if "checkpoint" in weights
              else f"--random-weights --seed {weights['seed']}")
    return (f"s3pot export --variant {trained.variant} {source} --adapter {adapter} "
            "--out EXPORT_DIR")

