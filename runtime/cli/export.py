"""Export the four stages (encoder, FE, SA, decoder) to ONNX graphs and a manifest.

Writes DIR/encoder.onnx, fe.onnx, sa.onnx, decoder.onnx (with --precision fp16 also
STAGE.fp16.onnx, mixed precision) and DIR/manifest.json, which records the variant,
normalisation, face set, weights, opset, the stage IO table and every file's sha256. Each graph is
checked (onnx.checker, one ONNX Runtime run against PyTorch) before the folder appears; a failed
export leaves nothing behind. `s3pot build --model DIR` turns the folder into TensorRT engines.
"""
from __future__ import annotations

from pathlib import Path

from .common import add_model_options, check_model_files, parse_face_set, say


#: What export needs beyond the base install.
TORCH_EXTRA = "'s3pot-rt[torch]' (torch, onnx, onnxsim)"


def add_arguments(parser) -> None:
    from s3pot.core.errors import require

    for module in ("torch", "onnx"):  # the options below are read from the exporter's modules
        require(module, TORCH_EXTRA)
    from s3pot.core.io_table import STAGES
    from s3pot.core.manifest import PRECISIONS
    from s3pot.export.onnx_export import DEFAULT_SIMPLIFIER, SIMPLIFIERS
    from s3pot.models.image_encoder import ATTENTION_MODES, DEFAULT_ATTENTION

    parser.add_argument("--out", type=Path, required=True, help="export folder (created; must be "
                        "new or empty unless --overwrite)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=list(PRECISIONS),
                        help="graphs to write: fp32 (always) and fp16 (mixed precision, FP32 "
                             "LayerNorm/Softmax/reductions, FP32 inputs and outputs)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES),
                        help="stages to export (default: all four)")
    parser.add_argument("--attention", default=DEFAULT_ATTENTION, choices=ATTENTION_MODES,
                        help="how the ViT encoder adds its relative-position bias (default: "
                             f"{DEFAULT_ATTENTION}; see README)")
    parser.add_argument("--simplifier", default=DEFAULT_SIMPLIFIER, choices=SIMPLIFIERS,
                        help=f"graph simplifier (default: {DEFAULT_SIMPLIFIER}; see README)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the ONNX Runtime run that checks each graph against PyTorch")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    add_model_options(parser, device=False, selector=False)


def run(args) -> int:
    from s3pot.export.folder import ExportRequest, export_folder

    args.variant = args.variant or "vit_b"
    request = ExportRequest(
        variant=args.variant, checkpoint=args.checkpoint, adapter=args.adapter,
        random_weights=args.random_weights, seed=args.seed, normalization=args.normalization,
        face_set=parse_face_set(args.face_set), precisions=tuple(dict.fromkeys(["fp32", *args.precision])),
        attention=args.attention, simplifier=args.simplifier,
        verify=not args.no_verify, overwrite=args.overwrite, stages=tuple(args.stages))
    check_model_files(args)  # export_folder checks the rest before it builds the model

    try:
        manifest = export_folder(request, args.out, progress=say("export"))
    except OSError as exc:  # no space, no permission, a file where a folder should be
        from s3pot.core.errors import S3potInputError
        raise S3potInputError(f"--out '{args.out}': could not write the export ({exc})") from None
    total = sum(g[p]["bytes"] + sum(d["bytes"] for d in g[p]["external_data"])
                for g in manifest["graphs"].values() for p in g)
    print(f"exported {args.variant} ({', '.join(manifest['precisions'])}) to {args.out}: "
          f"{len(manifest['graphs'])} stages, {total / 1e6:.1f} MB")
    return 0
