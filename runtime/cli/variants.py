"""List the backbone variants, their official checkpoint files and normalisation."""
from __future__ import annotations


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from s3pot.models.registry import VARIANTS

    for v in VARIANTS.values():
        print(f"{v.name:12s} {v.checkpoint or '-':24s} {v.normalization:5s} {v.description}")
    return 0
