"""Find, align and parse the faces of photos: the runtime's inputs, ready for `s3pot segment`.

Each face becomes a sample in the authors' README layout under --out: NAME.png (the FFHQ-aligned
crop), NAME_parsing_mask.npy (12-class labels drawn from the face mesh), NAME_ref.png (with a
reference) and NAME_align.json (the crop's transform, for paste-back). NAME is the photo's name,
with _face1, _face2, ... when a photo shows several faces (largest first). Then

    s3pot segment --input-dir OUT --out RESULTS ...

segments every face and also writes its masks pasted back into the original photo.

References: --reference PHOTO (a clean photo of the same person, aligned to each face by its
landmarks, then by intensity), --reference REF --parsing LABELS (made elsewhere), or --generator G.onnx (your face
generator). Without one, the crops and their landmark parsing are written for you to add
NAME_ref.png (and replace the parsing with the reference's, if it differs).

The parsing covers skin, eyebrows, eyes, nose, lips and mouth; the mesh has no points on hair,
ears, neck or glasses, so those labels are never drawn.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.runtime.cli.common import EXIT_SAMPLES_FAILED

from .options import add_face_options, build_finder, build_reference, check_face_options

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("photos", type=Path, nargs="+", metavar="PHOTO", help="photos (JPEG/PNG)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--largest-only", action="store_true",
                        help="only the largest face of each photo (default: every face)")
    parser.add_argument("--device", default="auto",
                        help="where --generator runs: auto, cpu, cuda or cuda:N (default: auto)")
    add_face_options(parser, reference=True)


def sample_names(stem: str, count: int) -> list[str]:
    return [stem] if count == 1 else [f"{stem}_face{k + 1}" for k in range(count)]


def prepare_photo(path: Path, finder, reference, *, largest_only: bool = False) -> dict[str, list]:
    """Every output of one photo, computed, not written: sample name -> its files as
    ``(file name, write, content)``, for :func:`~s3pot.core.atomic.write_files`."""
    from s3pot.runtime.io import load_image, save_image, save_npy, write_text_atomic

    from .align import SIDECAR_SUFFIX
    from .faces import NoFaceError

    rgb = load_image(path)
    faces = finder.find(rgb)
    if not faces:
        raise NoFaceError(f"photo '{path}': expected a face, got none found ({rgb.shape[1]}x"
                          f"{rgb.shape[0]} pixels; try a lower --min-score)")
    faces = faces[:1] if largest_only else faces
    samples = {}
    for k, (name, face) in enumerate(zip(sample_names(path.stem, len(faces)), faces)):
        files = [(f"{name}.png", save_image, face.crop(rgb))]
        if reference is None:
            labels = face.parsing()
        else:
            ref_rgb, labels = reference.for_face(rgb, face)
            files.append((f"{name}_ref.png", save_image, ref_rgb))
        files.append((f"{name}_parsing_mask.npy", save_npy, labels.astype(np.uint8, copy=False)))
        record = face.alignment.to_json(source=str(path.resolve()), face=k + 1, faces=len(faces),
                                        score=round(face.detection.score, 4),
                                        reference=reference.describe() if reference else None)
        files.append((f"{name}{SIDECAR_SUFFIX}", write_text_atomic, json.dumps(record, indent=1)))
        samples[name] = files
    return samples


def check_names(photos: list[Path]) -> None:
    """Each photo's name becomes its samples' names: they must be distinct and must not read as
    another sample's reference or ground truth (``NAME_ref``, ``NAME_gt``)."""
    from s3pot.runtime.datasets import GT_SUFFIX, REFERENCE_SUFFIX

    stems: dict[str, list[Path]] = {}
    for path in photos:
        if path.stem.endswith((REFERENCE_SUFFIX, GT_SUFFIX)):
            raise S3potInputError(f"photo '{path}': expected a name not ending in {REFERENCE_SUFFIX} "
                                  f"or {GT_SUFFIX} (the sample layout reads those as a reference or "
                                  "ground truth); rename it")
        stems.setdefault(path.stem, []).append(path)
    clashes = [paths for paths in stems.values() if len(paths) > 1]
    if clashes:
        raise S3potInputError("photos: expected distinct names (each names its samples), got "
                              + "; ".join(" and ".join(f"'{p}'" for p in paths) for paths in clashes))


def run(args) -> int:
    from s3pot.core.atomic import write_files
    from s3pot.runtime.cli.segment import check_out
    from s3pot.runtime.io import check_file

    check_face_options(args)
    for path in args.photos:
        check_file(path, "photo")
    check_names(args.photos)
    check_out(args.out)
    finder = build_finder(args)
    reference = build_reference(args, finder)
    failures, taken = [], set()
    single = len(args.photos) == 1
    for path in args.photos:
        try:
            samples = prepare_photo(path, finder, reference, largest_only=args.largest_only)
            clash = sorted(taken.intersection(samples))
            if clash:  # a.jpg with two faces beside a_face1.jpg
                raise S3potInputError(f"photo '{path}': its samples {', '.join(clash)} clash with an "
                                      "earlier photo's; rename it")
        except S3potInputError as exc:
            if single:
                raise
            failures.append(str(exc))
            continue
        try:
            for files in samples.values():  # each sample all or none
                write_files((args.out / name, write, content) for name, write, content in files)
        except OSError as exc:
            raise S3potInputError(f"--out '{args.out}': could not write ({exc})") from None
        taken.update(samples)
        print(f"{path.name}: {len(samples)} face{'s' if len(samples) > 1 else ''} -> "
              + ", ".join(samples))
        if len(samples) > 1 and reference is not None and reference.kind == "photo":
            print(f"s3pot: warning: {path.name}: every face got the reference photo of one person "
                  "(--largest-only keeps the largest face)", file=sys.stderr)
    for message in failures:
        print(f"s3pot: error: {message}", file=sys.stderr)
    if taken:
        print(f"{len(taken)} aligned face{'s' if len(taken) > 1 else ''} in {args.out}"
              + ("" if reference else " (no reference: add NAME_ref.png to each before "
                 "`s3pot segment --input-dir`)"))
    return EXIT_SAMPLES_FAILED if failures else 0
