"""Train the S3POT adapter (its SA layer) on a dataset, without occlusion labels.

By default the paper's objectives (SPEC.md) and settings: AdamW, learning rate 1e-4 with cosine
decay, batch 3, 50 epochs. The data is a folder in either SPEC layout; ground truth, where there
is any, is only used for the validation IoU. The frozen encoder runs once per image. Its
embeddings are kept in OUT/embeddings (or --cache DIR), so every later epoch runs only SA and the
mask decoder.

After every epoch OUT holds:
- adapter.pt: for `s3pot export --adapter` and `s3pot segment --adapter`;
- state.pt: what --resume continues from;
- history.json and curve.png: loss per epoch and validation IoU.

  s3pot train --data data/train --val data/val --checkpoint sam_vit_b_01ec64.pth --out runs/a
  s3pot train --data data/train --val data/val --checkpoint sam_vit_b_01ec64.pth --out runs/a --resume
"""
from __future__ import annotations

from pathlib import Path

from s3pot.core.errors import S3potInputError

from .options import add_objective_options, build_model, export_hint, file_error


def add_arguments(parser) -> None:
    from s3pot.runtime.cli.common import add_model_options

    parser.add_argument("--data", type=Path, required=True, help="training set (either SPEC layout)")
    parser.add_argument("--val", type=Path, help="validation set: loss and, with ground truth, "
                        "occlusion IoU after every epoch")
    parser.add_argument("--out", type=Path, required=True, help="run folder (new, or an earlier "
                        "run's with --resume or --overwrite)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs (default: 50)")
    parser.add_argument("--batch", type=int, default=3, help="samples per step (default: 3)")
    parser.add_argument("--cache", type=Path, help="embedding cache folder, shareable between "
                        "runs (default: OUT/embeddings)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in a --out that holds a run (its embeddings are kept)")
    add_objective_options(parser, lr=1e-4, weight_decay=0.01)
    add_model_options(parser, seed_help="seed of the SA layer's initial weights, of "
                                         "the sample order and of --random-weights (default: 0)")


def check_out(args) -> None:
    """``--out`` fits ``--resume`` / ``--overwrite``, before any model is built."""
    from s3pot.runtime.cli.segment import check_out as check_writable

    from .trainer import CACHE_FOLDER, STATE_FILE

    out = args.out
    check_writable(out)
    if args.cache is not None:
        check_writable(args.cache)
    if args.resume and args.overwrite:
        raise S3potInputError("--resume and --overwrite: expected one of them, got both")
    if args.resume:
        if not (out / STATE_FILE).is_file():
            raise S3potInputError(f"--resume: expected '{out / STATE_FILE}' from an earlier run, "
                                  "got no such file")
        return
    held = sorted(p.name for p in out.iterdir() if p.name != CACHE_FOLDER) if out.is_dir() else []
    if held and not args.overwrite:
        raise S3potInputError(f"--out '{out}': expected a new or empty folder, got one holding "
                              f"{', '.join(held[:4])}{', ...' if len(held) > 4 else ''} (continue "
                              "its run with --resume, or start over with --overwrite)")


def _run_files(out: Path) -> list[Path]:
    """The files of a run, which --overwrite removes (the embedding cache stays)."""
    from .trainer import ADAPTER_FILE, CURVE_FILE, HISTORY_FILE, STATE_FILE

    return [out / name for name in (STATE_FILE, ADAPTER_FILE, HISTORY_FILE, CURVE_FILE)]


def run(args) -> int:
    from .trainer import ADAPTER_FILE, CACHE_FOLDER, CURVE_FILE, STATE_FILE, TrainConfig, Trainer

    config = TrainConfig(epochs=args.epochs, batch=args.batch, lr=args.lr,
                         weight_decay=args.weight_decay, seed=args.seed, alpha=args.alpha,
                         lam=args.lam).check()
    check_out(args)
    for root, what in ((args.data, "--data"), (args.val, "--val")):
        if root is not None and not root.is_dir():
            raise S3potInputError(f"{what} '{root}': expected a dataset folder, got "
                                  f"{'a file' if root.exists() else 'no such folder'}")
    from s3pot.runtime.cli.common import say

    emit = say("train")
    trained = build_model(args)
    trainer = Trainer(trained.model, variant=trained.variant, normalization=trained.normalization,
                      face_set=trained.face_set, config=config, device=trained.device,
                      cache_dir=args.cache or args.out / CACHE_FOLDER, weights=trained.weights,
                      selector=args.selector, progress=True)
    try:
        if args.resume:  # a changed option is refused now, not after the data is encoded
            trainer.check_resume(args.out / STATE_FILE)
        emit(f"{trained.variant} on {trained.device}; checking and encoding the data (the "
             "encoder runs once per image, the cache keeps the rest)")
        trainer.load_data(args.data, args.val)
        stats = trainer.cache.stats
        emit(f"{len(trainer.train_set)} training"
             f"{f' and {len(trainer.val_set)} validation' if trainer.val_set else ''} samples "
             f"ready in {trainer.prepare_seconds:.1f} s: encoder ran on {stats.encoded} images, "
             f"{stats.hits} came from the cache")
        if args.overwrite:  # the old run goes now: a --resume must never continue it
            for path in _run_files(args.out):
                path.unlink(missing_ok=True)
        history = trainer.fit(args.out, resume=args.resume, report=emit)
    except KeyboardInterrupt:
        if trainer.epoch:
            emit(f"stopped; epochs 1-{trainer.epoch} are saved in {args.out}, continue with --resume")
        raise
    except OSError as exc:
        raise file_error(exc, args.out) from None
    finally:
        trainer.close()
    first, last = history[0], history[-1]
    line = f"loss {first['train']['total']:.4f} -> {last['train']['total']:.4f}"
    if last.get("val") and "mean_iou" in last["val"] and first.get("val"):
        line += f", val IoU {first['val']['mean_iou']:.4f} -> {last['val']['mean_iou']:.4f}"
    print(f"trained {trained.variant} SA for {config.epochs} epochs on {len(trainer.train_set)} "
          f"samples: {line} -> {args.out / ADAPTER_FILE} (curve: {args.out / CURVE_FILE})")
    emit(f"export it with: {export_hint(trained, args.out / ADAPTER_FILE)}")
    return 0
