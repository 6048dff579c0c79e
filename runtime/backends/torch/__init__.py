"""The PyTorch reference backend: S3POT's own modules, on the CPU or a GPU."""
from __future__ import annotations

from .loader import load_model
from .runner import TorchRunner, resolve_device


def create_runner(spec) -> TorchRunner:
    """A runner of ``spec.variant`` with its weights at ``spec.precision`` on ``spec.device``."""
    resolve_device(spec.device)  # a bad device fails before a large checkpoint is read
    model, context = load_model(spec)
    return TorchRunner(model, context, device=spec.device, precision=spec.precision)


__all__ = ["TorchRunner", "create_runner", "load_model", "resolve_device"]
