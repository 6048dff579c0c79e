"""What the CLI's tools share: exit codes, the model argument group (choices from the registries,
not typed again) and face-set parsing. Imports nothing heavy: each tool imports what it needs
inside ``run``."""
from __future__ import annotations

import argparse
from pathlib import Path

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import FACE_SETS, NORMALIZATIONS

EXIT_USER_ERROR = 2
EXIT_SAMPLES_FAILED = 1


def variant_names() -> list[str]:
    """The registry's variants; the registry module itself needs no torch to be read."""
    from s3pot.models.registry import VARIANTS
    return list(VARIANTS)


def add_model_options(parser: argparse.ArgumentParser, *, device: bool = True,
                      selector: bool = True) -> argparse._ArgumentGroup:
    """The options that pick and load a model: variant, weights, adapter, normalisation, face set."""
    from s3pot.kernels.selection import AUTO_BACKEND, SELECTION_BACKENDS

    group = parser.add_argument_group("model")
    group.add_argument("--variant", default="vit_b", choices=variant_names(), metavar="VARIANT",
                       help="SAM backbone: " + ", ".join(variant_names()) + " (default: vit_b; "
                            "see `s3pot variants`)")
    group.add_argument("--checkpoint", type=Path,
                       help="official SAM / MobileSAM checkpoint (e.g. sam_vit_b_01ec64.pth)")
    group.add_argument("--random-weights", action="store_true",
                       help="run without a checkpoint on seeded random weights (masks are not "
                            "meaningful; for smoke tests and latency)")
    group.add_argument("--seed", type=int, default=0, help="seed of --random-weights (default: 0)")
    group.add_argument("--adapter", type=Path,
                       help="trained S3POT adapter (SA and optional FE weights)")
    group.add_argument("--normalization", choices=list(NORMALIZATIONS),
                       help="pixel normalisation (default: the adapter's, else the variant's)")
    group.add_argument("--face-set",
                       help="parsing labels counted as face: " + ", ".join(FACE_SETS)
                            + " or comma-separated label ids (default: the adapter's, else paper)")
    if device:
        group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    if selector:
        group.add_argument("--selector", default="auto", choices=["auto", *SELECTION_BACKENDS],
                           help=f"prompt-selection kernel (default: auto = {AUTO_BACKEND})")
    return group


def parse_face_set(text: str | None):
    if text is None or text in FACE_SETS:
        return text
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise S3potInputError(f"--face-set: expected {' or '.join(FACE_SETS)} or label ids like "
                              f"1,2,3, got {text!r}") from None


def weights_label(args) -> str:
    if args.random_weights:
        return f"RANDOM (seed {args.seed}; --random-weights: the masks are not meaningful)"
    label = f"{args.checkpoint}"
    return label + (f" + adapter {args.adapter}" if args.adapter else " (no adapter: SA untrained)")


def check_model_files(args) -> None:
    """Checkpoint and adapter exist and are non-empty, before any model is built."""
    from s3pot.runtime.io import check_file

    for path, what in ((args.checkpoint, "checkpoint"), (args.adapter, "adapter")):
        if path is not None:
            check_file(path, what)
