"""The ``s3pot`` command line: a package of tools, one module per subcommand.

Each tool module has a docstring (its help), ``add_arguments(parser)`` and ``run(args)``; it is
imported only to build its own parser and imports what it needs (torch, ONNX Runtime, TensorRT)
inside ``run``, so ``s3pot build`` never imports torch. A user's mistake (missing file, wrong
shape, wrong checkpoint, ...) prints one line, ``s3pot: error: ...``, and exits with status 2;
nothing half-written is left behind.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from s3pot.core.errors import S3potError

from .common import EXIT_SAMPLES_FAILED, EXIT_USER_ERROR

#: subcommand -> its module under s3pot.runtime.cli (or a full module path: front end, benchmarks, training)
TOOLS = {
    "prepare": "s3pot.frontend.prepare",
    "segment": "segment",
    "export": "export",
    "build": "build",
    "quantize": "quantize",
    "variants": "variants",
    "doctor": "doctor",
    "bench": "s3pot.benchmarks.cli",
    "evaluate": "s3pot.benchmarks.evaluate",
    "train": "s3pot.training.train",
    "fit-image": "s3pot.training.fit_image",
}

__all__ = ["EXIT_SAMPLES_FAILED", "EXIT_USER_ERROR", "TOOLS", "build_parser", "main", "tool_module"]


def tool_module(name: str):
    """The module of subcommand ``name`` (imported now)."""
    module = TOOLS[name]
    return importlib.import_module(module if "." in module else f"{__name__}.{module}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, the one subcommand about to run is the only tool imported."""
    parser = argparse.ArgumentParser(prog="s3pot", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in TOOLS:
        if only is not None and name != only:
            sub.add_parser(name)  # keeps the command listed; its options are not needed now
            continue
        module = tool_module(name)
        doc = module.__doc__ or name
        tool = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(tool)
        tool.set_defaults(func=module.run)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is a tool's name)."""
    for arg in argv:
        if arg in TOOLS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    try:
        parser = build_parser(only=command)
        args = parser.parse_args(argv)
    except S3potError as exc:  # a tool whose choices could not be listed, or that needs an extra
        print(f"s3pot: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
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
