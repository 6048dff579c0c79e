"""Build TensorRT engines from an export folder, one per stage and precision.

Reads DIR/manifest.json (written by `s3pot export`) and writes DIR/engines/PRECISION/STAGE.engine,
each with STAGE.engine.json: the TensorRT version, GPU, profiles and ONNX hash it was built with,
which the runtime checks before loading it. An engine whose sidecar still matches this machine
and graph is kept (--force rebuilds it); a stale one is rebuilt.

TensorRT 10 builds fp16 from the fp32 graph, norm / softmax / reduce layers pinned to FP32;
TensorRT 11 (strongly typed only) builds fp16 from the mixed-precision fp16 graph, so export with
`s3pot export ... --precision fp32 fp16`. fp32 engines run without TF32.

Needs TensorRT and an NVIDIA GPU, except --print-commands, which prints the equivalent trtexec
and polygraphy commands.
"""
from __future__ import annotations

import sys
from pathlib import Path

from s3pot.core.errors import S3potInputError
from s3pot.core.io_table import STAGES
from s3pot.core.manifest import PRECISIONS

TRT_MAJORS = (10, 11)


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="export folder written by `s3pot export`")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp16"],
                        help="engine precisions (default: fp16)")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES),
                        help="stages to build (default: all: " + " ".join(STAGES) + ")")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="engine folder: engines go to OUT/PRECISION/ (default: DIR/engines)")
    parser.add_argument("--timing-cache", type=Path, metavar="PATH",
                        help="timing cache file (default: one per GPU and TensorRT version under "
                             "$XDG_CACHE_HOME/s3pot/tensorrt/)")
    parser.add_argument("--force", action="store_true", help="rebuild engines that are up to date")
    parser.add_argument("--print-commands", action="store_true",
                        help="print the equivalent trtexec and polygraphy commands and exit "
                             "(needs neither TensorRT nor a GPU)")
    parser.add_argument("--trt-major", type=int, choices=TRT_MAJORS,
                        help="TensorRT major version the printed commands are for (default: the "
                             "installed one, else 10)")


def _installed_major() -> int | None:
    from s3pot.core.errors import MissingDependencyError
    from s3pot.export.tensorrt import import_tensorrt, major_of

    try:
        return major_of(import_tensorrt().__version__)
    except MissingDependencyError:
        return None


def _print_commands(args) -> int:
    from s3pot.export.tensorrt import commands_for, format_commands

    major = args.trt_major or _installed_major() or TRT_MAJORS[0]
    commands = commands_for(args.model, trt_major=major, precisions=args.precision,
                            stages=args.stages, out=args.out, timing_cache_file=args.timing_cache)
    print(format_commands(commands))
    return 0


def run(args) -> int:
    if args.print_commands:
        return _print_commands(args)
    from s3pot.export.tensorrt import build_engines, import_tensorrt, tensorrt_major

    trt = import_tensorrt()
    if args.trt_major is not None and args.trt_major != tensorrt_major(trt):
        raise S3potInputError(f"--trt-major: expected the installed TensorRT's major version "
                              f"({trt.__version__}) or none, got {args.trt_major} (it only picks "
                              "the version of --print-commands)")
    results = build_engines(args.model, precisions=args.precision, stages=args.stages,
                            out=args.out, timing_cache_file=args.timing_cache, force=args.force,
                            progress=lambda result: print(result.describe(), flush=True))
    built = sum(r.status == "built" for r in results)
    print(f"{built} engine(s) built, {len(results) - built} up to date "
          f"(TensorRT {trt.__version__})", file=sys.stdout)
    return 0
