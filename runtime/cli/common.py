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


def say(tool: str):
    """A function printing ``s3pot TOOL: message`` lines on stderr (progress of long work)."""
    import sys

    def emit(message: str) -> None:
        print(f"s3pot {tool}: {message}", file=sys.stderr, flush=True)
    return emit


def variant_names() -> list[str]:
    """The registry's variants; the registry module itself needs no torch to be read."""
    from s3pot.models.registry import VARIANTS
    return list(VARIANTS)


def add_model_options(parser: argparse.ArgumentParser, *, device: bool = True, selector: bool = True,
                      seed_help: str = "seed of --random-weights (default: 0)"
                      ) -> argparse._ArgumentGroup:
    """The options that pick and load a model: variant, weights, adapter, normalisation, face set."""
    from s3pot.kernels.selection import AUTO_BACKEND, SELECTION_BACKENDS

    group = parser.add_argument_group("model")
    group.add_argument("--variant", choices=variant_names(), metavar="VARIANT",
                       help="SAM backbone: " + ", ".join(variant_names()) + " (default: vit_b, "
                            "or the --model folder's; see `s3pot variants`)")
    group.add_argument("--checkpoint", type=Path,
                       help="official SAM / MobileSAM checkpoint (e.g. sam_vit_b_01ec64.pth)")
    group.add_argument("--random-weights", action="store_true",
                       help="run without a checkpoint on seeded random weights (masks are not "
                            "meaningful; for smoke tests and latency)")
    group.add_argument("--seed", type=int, default=0, help=seed_help)
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


def add_backend_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """What runs the model: backend, export folder, precision, threads (choices from the backend
    registry)."""
    from s3pot.runtime.backends import AUTO, BACKENDS, RUN_PRECISIONS

    group = parser.add_argument_group("backend")
    group.add_argument("--backend", default=AUTO, choices=[AUTO, *BACKENDS],
                       help="what runs the four stages (default: auto = tensorrt where --model has "
                            "engines and there is a GPU, else onnxruntime with --model, else torch)")
    group.add_argument("--model", type=Path, metavar="DIR",
                       help="export folder written by `s3pot export` (graphs, and engines of "
                            "`s3pot build`); its manifest fixes variant, weights and normalisation")
    group.add_argument("--precision", default="fp32", choices=RUN_PRECISIONS,
                       help="fp32, fp16 (exported / built fp16, or torch on CUDA), bf16 (torch, "
                            "openvino on AVX512-BF16 / AMX CPUs) or int8 (openvino on VNNI / AMX "
                            "CPUs, the encoder of `s3pot quantize`) (default: fp32)")
    group.add_argument("--threads", type=int, default=0,
                       help="CPU threads per stage (default: 0 = one per core)")
    return group


def model_spec(args):
    """The :class:`~s3pot.runtime.backends.ModelSpec` of the parsed options; contradictions (an
    export folder with a checkpoint, say) are refused here, before anything is loaded."""
    from s3pot.runtime.backends import ModelSpec

    if args.model is not None:
        given = [flag for flag, value in (("--checkpoint", args.checkpoint), ("--adapter", args.adapter),
                                          ("--random-weights", args.random_weights)) if value]
        if given:
            raise S3potInputError(f"--model '{args.model}': expected no {', '.join(given)} (the "
                                  "export folder holds its weights), got both")
    if args.threads < 0:
        raise S3potInputError(f"--threads: expected 0 or more, got {args.threads}")
    return ModelSpec(folder=args.model, variant=args.variant, checkpoint=args.checkpoint,
                     adapter=args.adapter, random_weights=args.random_weights, seed=args.seed,
                     precision=args.precision, device=args.device, threads=args.threads)


def parse_face_set(text: str | None):
    if text is None or text in FACE_SETS:
        return text
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise S3potInputError(f"--face-set: expected {' or '.join(FACE_SETS)} or label ids like "
                              f"1,2,3, got {text!r}") from None


def weights_label(args) -> str:
    if getattr(args, "model", None) is not None:
        return f"export '{args.model}'"
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
