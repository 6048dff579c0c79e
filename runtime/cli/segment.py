"""The ``s3pot`` command line: one subcommand per tool, whose help is the tool's docstring.

A user's mistake (missing file, wrong shape, wrong checkpoint, ...) prints one line, ``s3pot:
error: ...``, and exits with status 2; nothing half-written is left behind.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from s3pot.kernels.errors import S3potError, S3potInputError
from s3pot.kernels.spec import FACE_SETS, NORMALIZATIONS

log = logging.getLogger("s3pot")

EXIT_USER_ERROR = 2
EXIT_SAMPLES_FAILED = 1


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--variant", default="vit_b",
                       help="SAM backbone variant, see `s3pot variants` (default: vit_b)")
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
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    group.add_argument("--selector", default="auto", choices=["auto", "numba", "reference", "cuda"],
                       help="prompt-selection kernel (default: auto)")


def _parse_face_set(text: str | None):
    if text is None or text in FACE_SETS:
        return text
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise S3potInputError(f"--face-set: expected {' or '.join(FACE_SETS)} or label ids like "
                              f"1,2,3, got {text!r}") from None


def _build_pipeline(args):
    from .backends import load_backend_module
    from .pipeline import Pipeline

    backend = load_backend_module("torch").TorchBackend.from_variant(args.variant, checkpoint=args.checkpoint, adapter=args.adapter,
                                        random_weights=args.random_weights, device=args.device,
                                        seed=args.seed)
    return Pipeline(backend, normalization=args.normalization, face_set=_parse_face_set(args.face_set),
                    selector=args.selector)


def _write_outputs(out: Path, name: str, seg, image_path: Path, save_vis: bool, weights: str,
                   random_weights: bool) -> list[Path]:
    """Every output of one sample: all computed first, each file written atomically, and the
    files already written removed again if a later one fails (no partial set)."""
    from .io import load_image, save_image, save_mask_png, write_text_atomic
    from .visualize import overlay, stamp

    vis = None
    if save_vis:
        vis = overlay(load_image(image_path), seg.occlusion, face_region=seg.visible_face | seg.occlusion,
                      occlusion_points=seg.points(seg.occlusion_tokens),
                      face_points=seg.points(seg.face_tokens))
        if random_weights:
            vis = stamp(vis, "RANDOM WEIGHTS")
    summary = {
        "image": str(image_path), "weights": weights, "input_size": list(seg.input_size),
        "occlusion_fraction": float(seg.occlusion.mean()),
        "initial_token": seg.initial_token,
        "occlusion_tokens": seg.occlusion_tokens.tolist(), "face_tokens": seg.face_tokens.tolist(),
        "timings_s": {k: round(v, 6) for k, v in seg.timings.items()},
    }
    writers = [(f"{name}_occlusion.png", save_mask_png, seg.occlusion),
               (f"{name}_visible_face.png", save_mask_png, seg.visible_face),
               (f"{name}_prompts.json", write_text_atomic, json.dumps(summary, indent=1))]
    if vis is not None:
        writers.append((f"{name}_vis.jpg", save_image, vis))
    written: list[Path] = []
    try:
        for filename, write, content in writers:
            written.append(write(out / filename, content))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _weights_label(args) -> str:
    if args.random_weights:
        return f"RANDOM (seed {args.seed}; --random-weights: the masks are not meaningful)"
    label = f"{args.checkpoint}"
    return label + (f" + adapter {args.adapter}" if args.adapter else " (no adapter: SA untrained)")


def _check_paths(args, samples) -> None:
    """Everything a typo can break, checked before a (possibly large) model is loaded."""
    from .io import check_file

    if args.out.exists() and not args.out.is_dir():
        raise S3potInputError(f"--out '{args.out}': expected a folder, got an existing file")
    if args.input_dir is not None and args.out.resolve() == args.input_dir.resolve():
        raise S3potInputError(f"--out '{args.out}': expected a folder other than --input-dir "
                              "(outputs there would be read as samples on the next run)")
    if args.input_dir is None:
        sample = samples[0]
        for path, what in ((sample.image, "image"), (sample.reference, "reference"),
                           (sample.parsing, "parsing mask")):
            check_file(path, what)
    for path, what in ((args.checkpoint, "checkpoint"), (args.adapter, "adapter")):
        if path is not None:
            check_file(path, what)


def cmd_segment(args) -> int:
    """Segment occlusions on aligned faces: occlusion and visible-face masks at the input's size.

    One sample with --image, --reference and --parsing, or every sample of --input-dir (the
    authors' README layout NAME.jpg / NAME_ref.png / NAME_parsing_mask.npy, or their dataset
    layout of one numbered folder per sample). Outputs go under --out: NAME_occlusion.png,
    NAME_visible_face.png, NAME_prompts.json and, with --save-vis, NAME_vis.jpg.
    """
    from .datasets import Sample, find_samples

    single = [args.image, args.reference, args.parsing]
    if args.input_dir is not None and any(v is not None for v in single):
        raise S3potInputError("inputs: expected either --input-dir or --image/--reference/--parsing, got both")
    if args.input_dir is None:
        if any(v is None for v in single):
            missing = [flag for flag, v in zip(("--image", "--reference", "--parsing"), single) if v is None]
            raise S3potInputError(f"inputs: expected --image, --reference and --parsing (or --input-dir), "
                                  f"missing {', '.join(missing)}")
        samples = [Sample(name=args.image.stem, image=args.image, reference=args.reference,
                          parsing=args.parsing)]
    else:
        samples = find_samples(args.input_dir)
    _check_paths(args, samples)

    pipeline = _build_pipeline(args)
    weights = _weights_label(args)
    log.info("%s on %s; weights: %s", args.variant, pipeline.backend.describe(), weights)
    batch = len(samples) > 1 or args.input_dir is not None
    failures = []
    for sample in _progress(samples, enabled=len(samples) > 1):
        try:
            seg = pipeline.segment(sample.image, sample.reference, sample.parsing)
            _write_outputs(args.out, sample.name, seg, sample.image, args.save_vis, weights,
                           args.random_weights)
        except S3potInputError as exc:
            if not batch:
                raise
            failures.append((sample.name, str(exc)))
        except OSError as exc:
            if not batch:
                raise S3potInputError(f"outputs in '{args.out}': could not write ({exc})") from None
            failures.append((sample.name, f"could not write outputs ({exc})"))
        except Exception as exc:  # a batch keeps going past one sample's failure, and says why
            if not batch:
                raise
            log.debug("sample %s failed", sample.name, exc_info=True)
            failures.append((sample.name, f"{type(exc).__name__}: {exc}"))
        else:
            if not batch:
                print(f"{sample.name}: occlusion {100 * seg.occlusion.mean():.1f}% of the image, "
                      f"{len(seg.occlusion_tokens)} occlusion / {len(seg.face_tokens)} face prompts "
                      f"-> {args.out}")
    if batch:
        print(f"{len(samples) - len(failures)} of {len(samples)} samples segmented into {args.out}")
    print(f"s3pot segment: {args.variant} on {pipeline.backend.describe()}; weights: {weights}",
          file=sys.stderr)
    for name, message in failures:
        print(f"s3pot: error: sample {name}: {message}", file=sys.stderr)
    return EXIT_SAMPLES_FAILED if failures else 0


def _progress(items, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, unit="sample", file=sys.stderr)


def cmd_variants(args) -> int:
    """List the backbone variants, their official checkpoint files and normalisation."""
    from s3pot.models.registry import VARIANTS

    for v in VARIANTS.values():
        print(f"{v.name:12s} {v.checkpoint or '-':24s} {v.normalization:5s} {v.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3pot", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser("segment", help=cmd_segment.__doc__.splitlines()[0], description=cmd_segment.__doc__)
    seg.add_argument("--image", type=Path, help="the face photo (JPEG/PNG)")
    seg.add_argument("--reference", type=Path, help="the occlusion-free reference of the same face")
    seg.add_argument("--parsing", type=Path, help="the reference's parsing labels (.npy or label PNG)")
    seg.add_argument("--input-dir", type=Path, help="a folder of samples (either SPEC layout)")
    seg.add_argument("--out", type=Path, required=True, help="output folder (created)")
    seg.add_argument("--save-vis", action="store_true", help="also write an overlay with the prompts")
    _add_model_options(seg)
    seg.set_defaults(func=cmd_segment)

    var = sub.add_parser("variants", help=cmd_variants.__doc__.splitlines()[0], description=cmd_variants.__doc__)
    var.set_defaults(func=cmd_variants)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except S3potError as exc:
        print(f"s3pot: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("s3pot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
