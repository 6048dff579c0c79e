"""The project's exceptions. A user's mistake raises :class:`S3potInputError`; the CLI prints its
message (no traceback) and exits non-zero."""


class S3potError(Exception):
    """Base class of every error s3pot raises on purpose."""


class S3potInputError(S3potError, ValueError):
    """Bad user input: the message names the thing, what was expected and what came."""


class NoFaceTokensError(S3potInputError):
    """The parsing mask marks no token as face, so there is nothing to contrast."""


class CheckpointError(S3potInputError):
    """A checkpoint or adapter that does not fit the model it is loaded into."""


class MissingDependencyError(S3potError, ImportError):
    """An optional dependency is not installed; the message carries the install command."""


def require(module: str, install: str):
    """Import ``module`` or fail with the exact install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is needed here but not importable ({exc}); install it with: pip install {install}"
        ) from None


class ExportError(S3potInputError):
    """An export folder or engine that cannot be used: missing or altered files, a manifest of
    another model, an engine built by another TensorRT version or on another GPU."""


class NoGpuError(S3potError):
    """Work that needs an NVIDIA GPU (engine builds, CUDA kernels) found none."""
