"""The front end's command-line options, shared by ``s3pot prepare`` and ``s3pot segment --video``."""
from __future__ import annotations

from pathlib import Path

from s3pot.core.errors import S3potInputError
from s3pot.core.spec import IMAGE_SIZE

from .detect import CHOICES, DEFAULT_MODEL, MIN_SCORE
from .faces import MIN_CROP
from .litert import INSTALL_HINT
from .references import GENERATOR_RANGES


def add_face_options(parser, *, reference: bool) -> None:
    """Detector and crop options; with ``reference``, also --reference / --parsing / --generator
    (``s3pot segment`` declares its own --reference and --parsing)."""
    group = parser.add_argument_group(f"faces (the face extra: pip install {INSTALL_HINT})")
    group.add_argument("--detector", default=DEFAULT_MODEL, choices=list(CHOICES),
                       help="MediaPipe face detector: full (faces up to ~5 m, group photos), "
                            "short (selfie distance) or auto (full, then short where full finds "
                            f"none) (default: {DEFAULT_MODEL})")
    group.add_argument("--min-score", type=float, default=MIN_SCORE,
                       help=f"detection threshold in 0..1 (default: {MIN_SCORE})")
    group.add_argument("--size", type=int, default=IMAGE_SIZE,
                       help=f"side of the aligned crops in pixels (default: {IMAGE_SIZE}, the "
                            "runtime's input)")
    if reference:
        group.add_argument("--reference", type=Path,
                           help="a clean photo of the same person (aligned to each face by its "
                                "landmarks), or with --parsing an aligned reference made elsewhere")
        group.add_argument("--parsing", type=Path,
                           help="the --reference file's parsing labels (.npy or label PNG)")
    group.add_argument("--generator", type=Path,
                       help="a face generator in ONNX that repaints the face from the crop and its "
                            "landmark parsing (inputs: image N x 3 x H x W, parsing N x H x W, "
                            "N x 1 x H x W or N x 12 x H x W; output: image N x 3 x H x W)")
    group.add_argument("--generator-range", default="-1..1", choices=list(GENERATOR_RANGES),
                       help="pixel range of the generator's image input and output (default: -1..1)")


def check_face_options(args) -> None:
    if not 0.0 < args.min_score < 1.0:
        raise S3potInputError(f"--min-score: expected a value between 0 and 1, got {args.min_score}")
    if args.size < MIN_CROP:
        raise S3potInputError(f"--size: expected at least {MIN_CROP} pixels, got {args.size}")
    if args.parsing is not None and args.reference is None:
        raise S3potInputError("--parsing: expected it with --reference (the reference's labels), "
                              "got no --reference")
    if args.generator is not None and args.reference is not None:
        raise S3potInputError("reference: expected --reference or --generator, got both")


def build_finder(args):
    from .faces import FaceFinder

    return FaceFinder(size=args.size, detector=args.detector, min_score=args.min_score)


def build_reference(args, finder):
    """The reference source the options name, or None (no reference asked for)."""
    from .references import FileReference, GeneratorReference, PhotoReference

    if args.generator is not None:
        return GeneratorReference(args.generator, device=args.device,
                                  value_range=args.generator_range)
    if args.reference is None:
        return None
    if args.parsing is not None:
        return FileReference(args.reference, args.parsing)
    return PhotoReference(args.reference, finder)
