"""Atomic file and folder writes, shared by every layer that writes user-visible files (masks,
adapters, exported graphs, engines).

A file's bytes go to a temporary file beside the target and replace it in one rename; a folder
(an export) is filled under a temporary name beside the target and renamed into place at the end.
A failure therefore never leaves a half-written file or a half-filled folder. Files get the mode
any other new file gets (``0666`` less the umask), not ``mkstemp``'s private ``0600``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import S3potInputError


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


def honour_umask(path) -> Path:
    """Give a file another tool wrote (ONNX external data, a converter's output) the mode of any
    new file, ``0666`` less the umask; some writers create theirs ``0600``."""
    os.chmod(path, 0o666 & ~_umask())
    return Path(path)


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (parent folders created) atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_files(writes) -> list[Path]:
    """Write a set of files all or none: ``writes`` yields ``(path, write, content)``, each
    ``write(path, content)`` writing one file atomically and returning its path. If one fails, the
    files already written are removed again and the error goes on. Returns the paths written."""
    written: list[Path] = []
    try:
        for path, write, content in writes:
            written.append(write(path, content))
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        raise
    return written


def check_output_folder(path, *, overwrite: bool = False, what: str = "output folder") -> Path:
    """``path`` can become a new folder: no file there or on the way to it, and empty unless
    ``overwrite``. ``what`` names it in the error (an option such as ``--out``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise S3potInputError(f"{what} '{path}': expected a folder, got an existing file")
    existing = next(parent for parent in path.parents if parent.exists())
    if not existing.is_dir():
        raise S3potInputError(f"{what} '{path}': expected a folder path, got '{existing}', an "
                              "existing file, on the way")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise S3potInputError(f"{what} '{path}': expected a new or empty folder, got one with "
                              "files in it (pass --overwrite to replace it)")
    return path


@contextlib.contextmanager
def atomic_directory(path, *, overwrite: bool = False):
    """Fill a folder under a temporary name beside ``path`` and move it into place on success.

    Yields the temporary folder. On any exception it is removed and ``path`` is left as it was.
    An existing non-empty ``path`` is refused unless ``overwrite``; then it is replaced only once
    the new folder is complete.
    """
    path = check_output_folder(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
