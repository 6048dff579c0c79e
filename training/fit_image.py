"""Fit the adapter to one image (the paper's per-image mode); write its mask and its adapter.

Starts from --adapter (from `s3pot train`, say) or from a fresh SA layer, and fits a copy of it to
the image. Each epoch is one step; the run stops once --patience epochs fail to lower the loss by
--min-delta (the authors: 5 and 1e-4). The best weights are kept. The image and its reference go
through the encoder once.

Writes into --out:
- NAME_occlusion.png, NAME_visible_face.png, NAME_prompts.json (and NAME_vis.jpg with
  --save-vis), as `s3pot segment` writes them;
- NAME_adapter.pt: the fitted adapter;
- NAME_fit.json: the loss after every step, the step kept and whether it stopped early.

  s3pot fit-image --image face.jpg --reference face_ref.png --parsing face_parsing_mask.npy \\
      --checkpoint sam_vit_b_01ec64.pth --adapter runs/a/adapter.pt --out fitted/
"""
from __future__ import annotations

import json
from pathlib import Path


from .options import add_objective_options, build_model, file_error


def add_arguments(parser) -> None:
    from s3pot.runtime.cli.common import add_model_options

    parser.add_argument("--image", type=Path, required=True, help="the face photo (JPEG/PNG)")
    parser.add_argument("--reference", type=Path, required=True,
                        help="the occlusion-free reference of the same face")
    parser.add_argument("--parsing", type=Path, required=True,
                        help="the reference's parsing labels (.npy or label PNG)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--epochs", type=int, default=100, help="most epochs (default: 100)")
    parser.add_argument("--patience", type=int, default=5,
                        help="stop after this many epochs without a loss drop of --min-delta "
                             "(default: 5)")
    parser.add_argument("--min-delta", type=float, default=1e-4,
                        help="smallest loss drop that counts (default: 1e-4)")
    parser.add_argument("--cache", type=Path, help="embedding cache folder (default: none)")
    parser.add_argument("--save-vis", action="store_true", help="also write an overlay with the prompts")
    add_objective_options(parser, lr=1e-4, weight_decay=0.01)
    add_model_options(parser, seed_help="seed of the SA layer's initial weights "
                                         "without --adapter, and of --random-weights (default: 0)")


def run(args) -> int:
    import sys
    from dataclasses import asdict

    import numpy as np
    import torch
    from tqdm import tqdm

    from s3pot.models.checkpoint import save_adapter
    from s3pot.runtime.cli.segment import check_out, write_outputs
    from s3pot.runtime.io import check_file, write_text_atomic
    from s3pot.runtime.pipeline import Pipeline
    from s3pot.runtime.preprocess import prepare_inputs

    from .embeddings import EmbeddingCache
    from .per_image import FitConfig, fit_image
    from .steps import carries_fe, sample_prompts, torch_runner

    config = FitConfig(epochs=args.epochs, patience=args.patience, min_delta=args.min_delta,
                       lr=args.lr, weight_decay=args.weight_decay, alpha=args.alpha,
                       lam=args.lam).check()
    for path, what in ((args.image, "image"), (args.reference, "reference"),
                       (args.parsing, "parsing mask")):
        check_file(path, what)
    check_out(args.out)
    if args.cache is not None:
        check_out(args.cache)
    from s3pot.runtime.cli.common import say

    emit = say("fit-image")
    trained = build_model(args)
    prepared = prepare_inputs(args.image, args.reference, args.parsing,
                              normalization=trained.normalization, face_set=trained.face_set)
    model, device, name = trained.model.to(trained.device), trained.device, args.image.stem
    runner = torch_runner(model, device, trained.variant, trained.normalization)
    try:
        cache = EmbeddingCache(args.cache, model, trained.variant, device)
        embeddings = np.stack(cache.fetch(list(prepared.pixels)))  # 2 x 256 x 64 x 64: Z, Z_r
        prompts = sample_prompts(runner, embeddings, prepared.face_mask, args.selector)
        emit(f"{trained.variant} on {device}: {len(prompts.occlusion_tokens)} occlusion and "
             f"{len(prompts.face_tokens)} face prompts; fitting up to {config.epochs} epochs")
        with tqdm(total=config.epochs, desc="fitting", unit="epoch", file=sys.stderr,
                  leave=False) as bar:
            def progress(epoch: int, loss: float) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            result = fit_image(model, torch.from_numpy(embeddings[0]).to(device), prompts, config,
                               progress=progress)
        pipeline = Pipeline(runner, normalization=trained.normalization,
                            face_set=trained.face_set, selector=args.selector)
        seg = pipeline.run_encoded(prepared, embeddings)
        sam = (f"RANDOM (seed {args.seed}; --random-weights: the masks are not meaningful)"
               if args.random_weights else str(args.checkpoint))
        weights = (f"{sam} + SA fitted to this image from {args.adapter or 'a fresh SA layer'} "
                   f"-> {name}_adapter.pt")
        written = write_outputs(args.out, name, seg, args.image, args.save_vis, weights,
                                args.random_weights)
        try:
            summary = {"image": str(args.image), **result.as_dict(), "config": asdict(config)}
            written.append(save_adapter(
                args.out / f"{name}_adapter.pt", model, variant=trained.variant,
                normalization=trained.normalization, face_set=trained.face_set,
                include_fe=carries_fe(model),
                meta={"mode": "per-image", "sam_weights": trained.weights,
                      **{k: v for k, v in summary.items() if k != "losses"}}))
            written.append(write_text_atomic(args.out / f"{name}_fit.json",
                                             json.dumps(summary, indent=1)))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise file_error(exc, args.out) from None
    finally:
        runner.deactivate()
    print(f"{name}: {result.steps} steps{' (stopped early)' if result.stopped_early else ''}, "
          f"loss {result.losses[0]['total']:.4f} -> {result.best_loss:.4f} (kept: the weights "
          f"after {result.best_step} steps); occlusion {100 * seg.occlusion.mean():.1f}% of the "
          f"image -> {args.out}")
    return 0
