"""Occlusion IoU over a dataset with ground truth (SPEC.md, Evaluation): per image, the mean over
images, and the pooled IoU (all intersections over all unions).

The dataset is a folder in either SPEC layout (NAME.jpg / NAME_ref.png / NAME_parsing_mask.npy /
NAME_gt.png, or one numbered folder per sample with a LabelMe .json). The masks come from a model
(the options of `s3pot segment`) or, with --predictions, from a folder `s3pot segment` wrote
(NAME_occlusion.png). Samples without ground truth are listed and skipped. An image where both
masks are empty scores 1 (nothing to find, nothing found).

Writes OUT/iou.csv (one row per image) and OUT/summary.json; prints the summary.

  s3pot evaluate --input-dir dataset/val --checkpoint sam_vit_b_01ec64.pth --adapter a.pt --out eval/
  s3pot evaluate --input-dir dataset/val --predictions results/ --out eval/
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

from s3pot.core.errors import S3potInputError
from s3pot.runtime.metrics import ImageScore, score, summarize

#: What `s3pot segment` names a sample's occlusion mask.
PREDICTION_SUFFIX = "_occlusion.png"


def csv_text(scores: list[ImageScore]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(ImageScore.__dataclass_fields__))
    writer.writeheader()
    for s in scores:
        writer.writerow({**asdict(s), "iou": f"{s.iou:.6f}"})
    return out.getvalue()


def add_arguments(parser) -> None:
    from s3pot.runtime.cli.common import add_backend_options, add_model_options

    parser.add_argument("--input-dir", type=Path, required=True,
                        help="the dataset (either SPEC layout, with ground truth)")
    parser.add_argument("--predictions", type=Path, metavar="DIR",
                        help="score the NAME_occlusion.png masks in DIR instead of running a model")
    parser.add_argument("--out", type=Path, required=True, help="folder for iou.csv and summary.json")
    add_model_options(parser)
    add_backend_options(parser)


def _predicted_masks(args, samples):
    """(sample, predicted H x W bool) for each sample: read from --predictions or segmented."""
    from s3pot.runtime.io import load_mask

    if args.predictions is not None:
        for sample in samples:
            path = args.predictions / f"{sample.name}{PREDICTION_SUFFIX}"
            if not path.is_file():
                raise S3potInputError(f"--predictions '{args.predictions}': expected "
                                      f"{path.name} for sample {sample.name!r}, got no such file")
            yield sample, load_mask(path)
        return
    from s3pot.runtime.cli.segment import build_pipeline

    pipeline = build_pipeline(args, tool="evaluate")
    try:
        for sample in samples:
            yield sample, pipeline.segment(sample.image, sample.reference, sample.parsing).occlusion
    finally:
        pipeline.close()


def run(args) -> int:
    from s3pot.core.atomic import write_bytes_atomic
    from s3pot.runtime.cli.segment import check_out
    from s3pot.runtime.datasets import find_samples, load_ground_truth

    check_out(args.out)
    samples = find_samples(args.input_dir)
    with_truth = [s for s in samples if s.gt is not None]
    skipped = [s.name for s in samples if s.gt is None]
    if not with_truth:
        summarize([], skipped)  # the one clear error
    if args.predictions is not None and not args.predictions.is_dir():
        raise S3potInputError(f"--predictions '{args.predictions}': expected a folder of "
                              f"NAME{PREDICTION_SUFFIX} masks, got {'a file' if args.predictions.exists() else 'nothing'}")
    scores = []
    for sample, predicted in _predicted_masks(args, with_truth):
        truth = load_ground_truth(sample, predicted.shape)
        scores.append(score(sample.name, predicted.astype(bool), truth))
    summary = summarize(scores, skipped)
    summary["source"] = (f"predictions in {args.predictions}" if args.predictions is not None
                         else "segmented by this run")
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / "iou.csv", csv_text(scores).encode())
    write_bytes_atomic(args.out / "summary.json", json.dumps(summary, indent=1).encode())
    print(f"occlusion IoU over {summary['images']} images: mean {summary['mean_iou']:.4f}, pooled "
          f"{summary['pooled_iou']:.4f}" + (f"; {len(skipped)} without ground truth skipped" if skipped else ""))
    print(f"wrote {args.out / 'iou.csv'} and {args.out / 'summary.json'}", file=sys.stderr)
    return 0
