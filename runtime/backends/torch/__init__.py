"""The PyTorch reference backend: S3POT's own modules, on the CPU or a GPU."""
from .runner import TorchBackend, resolve_device

__all__ = ["TorchBackend", "resolve_device"]
