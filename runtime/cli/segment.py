"""Segment occlusions on aligned faces: occlusion and visible-face masks at the input's size.

One sample with --image, --reference and --parsing, or every sample of --input-dir (the
authors' README layout NAME.jpg / NAME_ref.png / NAME_parsing_mask.npy, or their dataset
layout of one numbered folder per sample). Outputs go under --out: NAME_occlusion.png,
NAME_visible_face.png, NAME_prompts.json and, with --save-vis, NAME_vis.jpg. A crop written by
`s3pot prepare` (NAME_align.json beside it) also gets its masks pasted back into the original
photo: NAME_source_occlusion.png, NAME_source_visible_face.png (and NAME_source_vis.jpg).

Video (the face extra): --video IN with --reference PHOTO (a clean photo of the person), or
--reference REF --parsing LABELS (an aligned reference), or --generator G.onnx. Every frame's
face is found and aligned, the reference is encoded once, and NAME_mask.mp4, NAME_overlay.mp4 and
NAME_video.json are written; frames without a face pass through.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from s3pot.core.errors import S3potInputError

from .common import (EXIT_SAMPLES_FAILED, add_backend_options, add_model_options,
                     check_model_files, model_spec, parse_face_set, weights_label)

log = logging.getLogger("s3pot")


def add_arguments(parser) -> None:
    parser.add_argument("--image", type=Path, help="the face photo (JPEG/PNG)")
    parser.add_argument("--reference", type=Path, help="the occlusion-free reference of the same face")
    parser.add_argument("--parsing", type=Path, help="the reference's parsing labels (.npy or label PNG)")
    parser.add_argument("--input-dir", type=Path, help="a folder of samples (either SPEC layout)")
    parser.add_argument("--video", type=Path, help="a video whose face is segmented frame by frame")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--save-vis", action="store_true", help="also write an overlay with the prompts")
    add_model_options(parser)
    add_backend_options(parser)
    from s3pot.frontend.options import add_face_options

    add_face_options(parser, reference=False)


def build_pipeline(args, tool: str = "segment"):
    """The pipeline of the parsed model and backend options (``s3pot segment`` and ``evaluate``)."""
    from s3pot.runtime.backends import AUTO, create_runner
    from s3pot.runtime.pipeline import Pipeline

    spec = model_spec(args)
    name, why = args.backend, None
    if name == AUTO:
        from s3pot.runtime.backends.auto import choose

        name, why = choose(spec)
    runner = create_runner(name, spec)
    if why is not None:  # after the model checks, so that an error stands alone
        print(f"s3pot {tool}: backend {name} ({why})", file=sys.stderr)
    _say_if_compiling(args.selector, tool)
    return Pipeline(runner, normalization=args.normalization,
                    face_set=parse_face_set(args.face_set), selector=args.selector)


def _say_if_compiling(selector: str, tool: str = "segment") -> None:
    """The Numba kernels compile on their first use on a machine (about 25 s, cached after)."""
    from s3pot.kernels.selection import resolve_backend

    if resolve_backend(selector) != "numba":
        return
    from s3pot.kernels import numba_cpu

    if not numba_cpu.cache_is_warm():
        print(f"s3pot {tool}: compiling the Numba prompt-selection kernels (first run on this "
              "machine only, about 25 s)", file=sys.stderr, flush=True)


def write_outputs(out: Path, name: str, seg, image_path: Path, save_vis: bool, weights: str,
                  random_weights: bool, paste_back: bool = True) -> list[Path]:
    """Every output of one sample: all computed first, each file written atomically, and the
    files already written removed again if a later one fails (no partial set)."""
    from s3pot.core.atomic import write_files
    from s3pot.runtime.io import load_image, save_image, save_mask_png, write_text_atomic
    from s3pot.runtime.visualize import overlay, stamp

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
    if paste_back:
        writers += [(name + suffix, write, content)
                    for suffix, write, content in pasted_back(image_path, seg, save_vis)]
    return write_files((out / filename, write, content) for filename, write, content in writers)


def check_out(out: Path) -> None:
    """``--out`` is a folder, or can be created as one, and can be written (checked without
    creating anything)."""
    if out.exists() and not out.is_dir():
        raise S3potInputError(f"--out '{out}': expected a folder, got an existing file")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise S3potInputError(f"--out '{out}': expected a folder, but '{existing}' is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise S3potInputError(f"--out '{out}': expected a writable folder, got no write "
                              f"permission in '{existing}'")


def _check_inputs(args, samples) -> list | None:
    """Everything a typo or a bad file can break, checked before a (possibly large) model is
    loaded. One sample is decoded here (and returned decoded); a folder's samples are decoded one
    by one later, and one that fails is reported and skipped."""
    from s3pot.runtime.io import check_file, load_image, load_parsing
    from s3pot.runtime.preprocess import check_pair

    check_out(args.out)
    if args.input_dir is not None and args.out.resolve() == args.input_dir.resolve():
        raise S3potInputError(f"--out '{args.out}': expected a folder other than --input-dir "
                              "(outputs there would be read as samples on the next run)")
    decoded = None
    if args.input_dir is None:
        sample = samples[0]
        for path, what in ((sample.image, "image"), (sample.reference, "reference"),
                           (sample.parsing, "parsing mask")):
            check_file(path, what)
        image, reference = load_image(sample.image), load_image(sample.reference)
        check_pair(image, reference, str(sample.image), str(sample.reference))
        decoded = [image, reference, load_parsing(sample.parsing)]
    check_model_files(args)
    if args.model is not None:
        from s3pot.core.manifest import read_manifest
        read_manifest(args.model)
    return decoded


def run(args) -> int:
    from s3pot.runtime.datasets import Sample, find_samples

    if args.video is not None:
        return run_video(args)
    if args.generator is not None:
        raise S3potInputError("--generator: expected it with --video (for photos, make the "
                              "references with `s3pot prepare --generator`), got no --video")
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
    decoded = _check_inputs(args, samples)

    pipeline = build_pipeline(args)
    try:
        return _segment_all(args, pipeline, samples, decoded)
    finally:
        pipeline.close()  # engines and sessions freed in order, not at interpreter exit


def run_video(args) -> int:
    """``--video``: the front end finds each frame's face; see :mod:`s3pot.frontend.video`."""
    from s3pot.frontend.options import build_finder, build_reference, check_face_options
    from s3pot.frontend.video import open_video, segment_video
    from s3pot.runtime.io import write_text_atomic

    if args.image is not None or args.input_dir is not None:
        raise S3potInputError("inputs: expected --video alone, got it with --image or --input-dir")
    if args.reference is None and args.generator is None:
        raise S3potInputError("--video: expected --reference PHOTO (a clean photo of the person), "
                              "--reference REF --parsing LABELS or --generator G.onnx, got none")
    check_face_options(args)
    open_video(args.video).release()
    check_out(args.out)
    check_model_files(args)
    finder = build_finder(args)
    source = build_reference(args, finder)
    pipeline = build_pipeline(args)
    weights = weights_label(args)
    try:
        report = segment_video(pipeline, finder, source, args.video, args.out,
                               progress=lambda frames, total: _progress(frames, True, total, "frame"),
                               stamp_text="RANDOM WEIGHTS" if args.random_weights else None)
    finally:
        pipeline.close()
    summary = {**report.as_dict(), "weights": weights, "model": pipeline.runner.describe()}
    write_text_atomic(args.out / f"{args.video.stem}_video.json", json.dumps(summary, indent=1))
    print(f"{args.video.name}: {report.frames} frames at {report.fps:.2f} frames/s, "
          f"{report.segmented} segmented, {len(report.frames_without_face)} without a face; "
          f"reference encoded {report.references_encoded}x -> {args.out}")
    print(f"s3pot segment: {pipeline.runner.context.variant} on {pipeline.runner.describe()}; "
          f"weights: {weights}", file=sys.stderr)
    if report.truncated:
        print(f"s3pot: warning: video '{args.video}': its header announces {report.frames_expected} "
              f"frames, {report.frames} could be decoded (a cut or damaged file)", file=sys.stderr)
    if report.segmented == 0:
        print(f"s3pot: error: video '{args.video}': expected a face in at least one frame, got none "
              f"in {report.frames}", file=sys.stderr)
        return EXIT_SAMPLES_FAILED
    return 0


def pasted_back(image_path: Path, seg, save_vis: bool) -> list:
    """Writers of a ``s3pot prepare`` crop's masks in its original photo (none for other images):
    ``(file suffix, writer, content)``. A sidecar that is not ``s3pot prepare``'s, or a crop
    that is no longer square, is warned about and skipped: the crop's own masks still come."""
    from s3pot.frontend.align import read_sidecar, sidecar_path
    from s3pot.runtime.io import load_image, save_image, save_mask_png
    from s3pot.runtime.visualize import overlay

    sidecar = sidecar_path(image_path)
    if not sidecar.is_file():
        return []
    try:
        alignment, record = read_sidecar(sidecar)
    except S3potInputError as exc:
        log.warning("%s: not pasted back (%s)", image_path, exc)
        return []
    height, width = seg.input_size
    if height != width:
        log.warning("%s: not pasted back (expected a square crop as s3pot prepare wrote it, got "
                    "%d x %d)", image_path, width, height)
        return []
    alignment = alignment.resized(width)  # a crop saved at another size
    occlusion, visible = alignment.paste_mask(seg.occlusion), alignment.paste_mask(seg.visible_face)
    writers = [("_source_occlusion.png", save_mask_png, occlusion),
               ("_source_visible_face.png", save_mask_png, visible)]
    if save_vis:
        source = Path(record.get("source", ""))
        photo = load_image(source) if source.is_file() else None
        if photo is None or photo.shape[:2] != alignment.source_size:
            log.warning("%s: no source overlay (the photo '%s' is gone or changed)", image_path, source)
        else:
            writers.append(("_source_vis.jpg", save_image,
                            overlay(photo, occlusion, face_region=occlusion | visible)))
    return writers


def _segment_all(args, pipeline, samples, decoded) -> int:
    weights = weights_label(args)
    variant = pipeline.runner.context.variant
    log.info("%s on %s; weights: %s", variant, pipeline.runner.describe(), weights)
    batch = len(samples) > 1 or args.input_dir is not None
    failures = []
    for sample in _progress(samples, enabled=len(samples) > 1):
        try:
            seg = pipeline.segment(*(decoded or (sample.image, sample.reference, sample.parsing)))
            write_outputs(args.out, sample.name, seg, sample.image, args.save_vis, weights,
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
    print(f"s3pot segment: {variant} on {pipeline.runner.describe()}; weights: {weights}",
          file=sys.stderr)
    for name, message in failures:
        print(f"s3pot: error: sample {name}: {message}", file=sys.stderr)
    return EXIT_SAMPLES_FAILED if failures else 0


def _progress(items, enabled: bool, total: int | None = None, unit: str = "sample"):
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, total=total, unit=unit, file=sys.stderr)
