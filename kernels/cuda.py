"""Greedy matching and prompt selection on an NVIDIA GPU, written with Numba CUDA.

The matching is the parallel "locally dominant" form of SPEC stage 4: in rounds, every free row
finds its best free column (largest value, lowest column on a tie), every free column its best
free row (lowest row on a tie), and every pair that is each other's best is matched, until all
rows are. A best partner stays valid while it is free, so each round recomputes only the rows
and columns whose best was taken.

Why this equals the sequential greedy: the first free entry in (value desc, flat index asc) order
is the best of its row and of its column, so every round matches at least one pair. And a mutually
best pair ``(r, c)`` is matched by the sequential greedy too, since every entry before it in its
row or column has a partner retired earlier, so pairing it now commutes with the rest of the scan.

Inputs may live on the device: anything with ``__cuda_array_interface__`` (Numba, CuPy, PyTorch,
pycuda/TensorRT buffers wrapped so) is used in place, on the default stream, so synchronise the
producer's stream first. Host NumPy arrays are copied over. Results come back as host arrays.

The fused selection also normalises and multiplies on the device (one thread per token, a tiled
GEMM), so its ``S`` equals the CPU's only up to float32 rounding (about 1e-7): where two entries of
a row or column are that close, the matching may differ from the CPU backends. The matching itself
is exact: on the same ``S`` it gives the reference's pairs bit for bit.

Numba's CUDA target is imported on first use. Without a GPU (and without the simulator,
``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported) every entry point raises
:class:`MissingDependencyError`.
"""
from __future__ import annotations

import functools
import logging
from types import SimpleNamespace

import numpy as np

from .checks import check_face_mask, check_similarity
from s3pot.core.errors import MissingDependencyError, S3potInputError
from .reference import PromptSelection, split_matches
from s3pot.core.spec import NUM_TOKENS, PROMPT_DIM

logger = logging.getLogger(__name__)

#: Threads per block of the per-row best-column search (a power of two).
ROW_THREADS = 128
#: Threads per block of the one-thread-per-item kernels.
THREADS = 128


def numba_cuda():
    """``numba.cuda``, once a GPU (or the simulator) is known to be usable."""
    try:
        from numba import cuda
    except ImportError as error:
        raise MissingDependencyError(
            "the cuda backend needs Numba: pip install 'numba>=0.59'") from error
    if not cuda.is_available():
        raise MissingDependencyError(
            "the cuda backend needs an NVIDIA GPU with a working driver, and numba.cuda found "
            "none (numba.cuda.is_available() is False); use backend='numba' on this machine, or "
            "set NUMBA_ENABLE_CUDASIM=1 before importing numba to run the CUDA simulator")
    _check_numpy_for_numba_cuda()
    return cuda


#: The newest numba-cuda known to compile nothing under numpy 2.5 (its array support registers
#: ``np.row_stack``, which numpy 2.5 removed): seen on an H100 with numba-cuda 0.30.4.
NUMBA_CUDA_WITHOUT_NUMPY_2_5 = (0, 30, 4)


@functools.cache  # (numba_cuda() is called on every launch; the answer cannot change)
def _check_numpy_for_numba_cuda() -> None:
    import numpy as np

    from s3pot.core.machine import package_version

    if hasattr(np, "row_stack"):
        return
    _, version = package_version("numba-cuda")
    if version is None or not version[0].isdigit():
        return
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts <= NUMBA_CUDA_WITHOUT_NUMPY_2_5:
        raise MissingDependencyError(
            f"the cuda backend: numba-cuda {version} compiles no kernel with numpy {np.__version__} "
            "(numpy 2.5 removed np.row_stack, which it registers); pip install 'numpy<2.5', or a "
            "numba-cuda newer than 0.30.4")


def row_threads(num_cols: int) -> int:
    """Threads per row for the best-column search: at most ``ROW_THREADS``, and no more than a
    power of two holding about 8 columns each (at least a warp)."""
    wanted = 1 << max(0, (num_cols // 8 - 1).bit_length())
    return max(32, min(ROW_THREADS, wanted))


@functools.cache
def _kernels(threads_per_row: int) -> SimpleNamespace:
    """The kernels (compiled on first launch) for ``threads_per_row``, see :mod:`._cuda_kernels`."""
    numba_cuda()
    from . import _cuda_kernels

    return _cuda_kernels.build(threads_per_row)


def _blocks(count: int, threads: int = THREADS) -> int:
    return max(1, (count + threads - 1) // threads)


def as_device_array(array):
    """A device view of ``array`` if it lives on the GPU (no copy), else ``None``."""
    if getattr(array, "__cuda_ndarray__", False):  # a Numba device array (or the simulator's)
        return array
    if hasattr(array, "__cuda_array_interface__"):
        return numba_cuda().as_cuda_array(array)
    return None


def _device_matrix(array, name: str, shape=None):
    """``array`` on the device as float32, validated; host arrays are checked and copied."""
    cuda = numba_cuda()
    device = as_device_array(array)
    if device is None:
        host = np.asarray(array)
        if shape is not None and (host.shape != shape or not np.issubdtype(host.dtype, np.floating)):
            raise S3potInputError(
                f"{name}: expected float values of shape {shape}, got shape {host.shape}, "
                f"dtype {host.dtype}")
        return cuda.to_device(np.ascontiguousarray(host, dtype=np.float32))
    if device.dtype != np.float32 or device.ndim != 2 or (shape is not None and device.shape != shape):
        raise S3potInputError(
            f"{name}: expected a float32 device array of shape {shape or 'R x C'}, got shape "
            f"{tuple(device.shape)}, dtype {device.dtype}")
    return device


def _flag_set(flag) -> bool:
    return bool(flag.copy_to_host()[0])


def match_on_device(sim) -> np.ndarray:
    """Greedy matching of a validated ``R x C`` float32 device matrix (``R <= C``, finite).

    Returns ``R`` int64 (host): the column of each row.
    """
    cuda = numba_cuda()
    num_rows, num_cols = sim.shape
    if num_rows == 0:
        return np.empty(0, dtype=np.int64)
    threads_per_row = row_threads(num_cols)
    kernels = _kernels(threads_per_row)
    row_free = cuda.to_device(np.ones(num_rows, dtype=np.uint8))
    col_free = cuda.to_device(np.ones(num_cols, dtype=np.uint8))
    best_col = cuda.to_device(np.full(num_rows, -1, dtype=np.int32))
    best_row = cuda.to_device(np.full(num_cols, -1, dtype=np.int32))
    match = cuda.to_device(np.full(num_rows, -1, dtype=np.int64))
    matched = cuda.to_device(np.zeros(1, dtype=np.int64))
    done, rounds = 0, 0
    while done < num_rows:
        kernels.row_best[num_rows, threads_per_row](sim, row_free, col_free, best_col)
        kernels.col_best[_blocks(num_cols), THREADS](sim, row_free, col_free, best_row)
        kernels.pair[_blocks(num_rows), THREADS](best_col, best_row, row_free, col_free, match,
                                                 matched)
        now = int(matched.copy_to_host()[0])
        if now == done:  # cannot happen (see the module docstring); never loop forever
            raise RuntimeError(f"greedy matching stalled at {done} of {num_rows} rows")
        done, rounds = now, rounds + 1
    logger.debug("matched %d rows to %d columns in %d rounds", num_rows, num_cols, rounds)
    return match.copy_to_host()


def greedy_match_cuda(sim) -> np.ndarray:
    """:func:`s3pot.kernels.greedy_match` on the GPU: ``R x C`` -> ``R`` int64 (host), same result.

    ``sim``: host array (validated like the reference, then copied) or float32 device array
    (shape and finiteness checked on the device).
    """
    if as_device_array(sim) is None:
        return match_on_device(numba_cuda().to_device(check_similarity(sim)))
    sim = _device_matrix(sim, "similarity matrix")
    num_rows, num_cols = sim.shape
    if num_rows > num_cols:
        raise S3potInputError(
            f"similarity matrix: expected no more rows than columns (R <= C), got R={num_rows} > "
            f"C={num_cols}")
    bad = numba_cuda().to_device(np.zeros(1, dtype=np.int32))
    kernels = _kernels(row_threads(num_cols))
    tile = kernels.TILE
    kernels.any_nonfinite[(_blocks(num_rows, tile), _blocks(num_cols, tile)), (tile, tile)](sim, bad)
    if _flag_set(bad):
        raise S3potInputError("similarity matrix: expected finite values, got NaN/Inf entries")
    return match_on_device(sim)


def similarity_on_device(z_e, z_re, rows: np.ndarray):
    """``S`` of SPEC stage 4 on the device: ``N_f x N`` float32 (device array).

    ``z_e``, ``z_re``: float32 device arrays ``N x D`` (any ``N``, ``D``); ``rows``: the ``N_f``
    face token indices (host, ascending). Raises :class:`S3potInputError` on a non-finite token.
    """
    cuda = numba_cuda()
    num_tokens, dim = z_e.shape
    kernels = _kernels(row_threads(num_tokens))
    bad = cuda.to_device(np.zeros(1, dtype=np.int32))
    ref = cuda.device_array((rows.size, dim), dtype=np.float32)  # N_f x D
    image = cuda.device_array((num_tokens, dim), dtype=np.float32)  # N x D
    kernels.unit_rows[_blocks(rows.size), THREADS](z_re, cuda.to_device(rows), ref, bad)
    kernels.unit_rows[_blocks(num_tokens), THREADS](
        z_e, cuda.to_device(np.arange(num_tokens, dtype=np.int64)), image, bad)
    if _flag_set(bad):
        raise S3potInputError(
            "z_e / z_re (tokens): expected finite token vectors, got NaN/Inf (or a norm beyond "
            "float32)")
    sim = cuda.device_array((rows.size, num_tokens), dtype=np.float32)
    tile = kernels.TILE
    blocks = (_blocks(num_tokens, tile), _blocks(rows.size, tile))  # (x: columns, y: rows)
    kernels.similarity[blocks, (tile, tile)](ref, image, sim)
    return sim


def _similarity_and_face(z_e, z_re, face_mask):
    face = check_face_mask(face_mask)
    shape = (NUM_TOKENS, PROMPT_DIM)
    z_e = _device_matrix(z_e, "z_e (image tokens)", shape)
    z_re = _device_matrix(z_re, "z_re (reference tokens)", shape)
    return similarity_on_device(z_e, z_re, np.flatnonzero(face)), face


def similarity_cuda(z_e, z_re, face_mask):
    """The ``N_f x 4096`` float32 device matrix the cuda backend matches on (see the module doc).

    Same arguments as :func:`select_prompts_cuda`.
    """
    return _similarity_and_face(z_e, z_re, face_mask)[0]


def select_prompts_cuda(z_e, z_re, face_mask) -> PromptSelection:
    """:func:`s3pot.kernels.select_prompts` on the GPU.

    ``z_e``, ``z_re``: ``4096 x 256`` float32, device arrays or host arrays; ``face_mask``:
    ``64 x 64`` bool (host). Normalisation, similarity and matching run on the device; only the
    ``N_f`` matched indices come back.
    """
    sim, face = _similarity_and_face(z_e, z_re, face_mask)
    return split_matches(match_on_device(sim), face)
