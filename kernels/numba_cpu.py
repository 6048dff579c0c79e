"""Greedy matching and prompt selection compiled with Numba for the CPU.

Same contract as :mod:`s3pot.kernels.reference`, bit for bit: the similarity matrix comes from the
reference's own :func:`~s3pot.kernels.reference.similarity_for_selection` (one float32 GEMM), only
the matching differs.

Why it is fast: the reference sorts all ``R x C`` entries. Here each row first keeps only its
``INITIAL_CANDIDATES`` best columns, found in one pass that mostly reads the matrix through a
vectorised max per block of columns. A heap over rows, keyed by each row's best candidate
(value desc, row asc), then replays the greedy order lazily: the top row takes its candidate if
the column is still free, else moves on to its next free candidate. A row that runs out gets its
``REFILL_CANDIDATES`` best free columns, and if it runs out again, the full order of the free
columns (a radix sort), so no row is sorted more than once. Candidate lists only ever lose
columns, so a list's first free entry is the row's best free column, and the heap's top is the
globally first free entry, exactly as in the reference.

Cost: one pass over ``S`` plus a little per row when rows seldom compete for the same columns
(random or face-like data: about 3 ms at 1500 x 4096); in the worst case (every row ranking the
columns alike: rank-one or "hub" matrices) every row is sorted once, ``O(R C)``, about 50 ms there.

Single-threaded on purpose: on a 2-core machine a ``prange`` pass (OpenMP) lost to the spinning
OpenBLAS threads of the GEMM just before it (fused selection 36 ms against 23 ms). It releases
the GIL, so callers may run selections from several threads.

Numba is imported with this module; :mod:`s3pot.kernels` imports it only when the ``numba``
backend is asked for. Kernels are compiled once per machine (``cache=True``); when the package
folder is read-only the cache goes to ``$NUMBA_CACHE_DIR`` or, unset, to a per-user folder.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .checks import check_similarity
from s3pot.core.errors import MissingDependencyError
from s3pot.core.machine import first_writable, user_cache_dir, write_error
from .reference import PromptSelection, select_with

logger = logging.getLogger(__name__)


def cache_dir_fallback(package_dir: Path, configured: str) -> str | None:
    """Where Numba should cache when it cannot write beside the sources, or None when it can.

    ``configured`` is Numba's ``NUMBA_CACHE_DIR`` (empty when unset); it always wins.
    """
    if configured or write_error(package_dir / "__pycache__") is None:
        return None
    found = first_writable([user_cache_dir("numba"),
                            Path(tempfile.gettempdir()) / f"s3pot-numba-{os.getuid()}"])
    return None if found is None else str(found)


try:
    import numba
    from numba import njit
except ImportError as error:  # numba is a hard dependency, but keep the hint exact
    raise MissingDependencyError(
        "the numba backend needs Numba: pip install 'numba>=0.59'") from error

_fallback = cache_dir_fallback(Path(__file__).parent, numba.config.CACHE_DIR)
if _fallback:
    logger.info("package folder is read-only; caching Numba kernels in %s", _fallback)
    numba.config.CACHE_DIR = _fallback



def cache_is_warm() -> bool:
    """Whether this machine has compiled these kernels before (Numba's cache index is there), so
    the first selection will not stop to compile them."""
    folders = [Path(__file__).parent / "__pycache__"]
    if numba.config.CACHE_DIR:
        folders += list(Path(numba.config.CACHE_DIR).glob("**/"))
    return any(any(folder.glob(f"{Path(__file__).stem}.*.nbi")) for folder in folders)


#: Candidates each row keeps from the first pass.
INITIAL_CANDIDATES = 4
#: Candidates a row gets the first time it runs out (among the columns then free). The second
#: time it gets the full order of the free columns, so it never runs out again.
REFILL_CANDIDATES = 32
#: Columns per block of the vectorised skip test.
SCAN_BLOCK = 32
#: Entries at or above a row's bound that fit the gather scratch, per candidate wanted; more
#: (many ties) take the slower exact path.
GATHER_PER_CANDIDATE = 8

_SIGN = np.uint32(0x80000000)


@njit(cache=True, inline="always")
def _worse(row, a, b):
    """Column ``a`` ranks after column ``b`` in ``row``: smaller value, or equal and larger index."""
    return row[a] < row[b] or (row[a] == row[b] and a > b)


@njit(cache=True)
def _sift_down_worst(row, heap, size, i):
    """Restore the heap of columns (worst at the root) below position ``i``."""
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and _worse(row, heap[child + 1], heap[child]):
            child += 1
        if not _worse(row, heap[child], heap[i]):
            return
        heap[i], heap[child] = heap[child], heap[i]
        i = child


@njit(cache=True)
def _sift_up_worst(row, heap, i):
    while i > 0:
        parent = (i - 1) // 2
        if not _worse(row, heap[i], heap[parent]):
            return
        heap[i], heap[parent] = heap[parent], heap[i]
        i = parent


@njit(cache=True)
def _top_columns_by_heap(row, k, out):
    """The ``k`` best columns of ``row`` (``C``, ``k <= C``), best first, into ``out[:k]``.

    One pass with a ``k``-heap whose root is the worst column kept: the exact path for rows whose
    many ties defeat :func:`_gather_top_columns`.
    """
    for c in range(k):
        out[c] = c
        _sift_up_worst(row, out, c)
    threshold = row[out[0]]
    for c in range(k, row.size):
        if row[c] > threshold:  # columns come in ascending order: a tie never displaces
            out[0] = c
            _sift_down_worst(row, out, k, 0)
            threshold = row[out[0]]
    for end in range(k - 1, 0, -1):  # heap sort: worst to the back, best ends at out[0]
        out[0], out[end] = out[end], out[0]
        _sift_down_worst(row, out, end, 0)


@njit(cache=True, fastmath=True, inline="always")
def _span_max(row, col_free, lo, hi):
    """Max of ``row[lo:hi]`` over free columns (all when ``col_free`` is None), ``-inf`` if none.

    fastmath lets it vectorise; it is exact for finite values.
    """
    best = np.float32(-np.inf)
    if col_free is None:  # resolved at compile time: two specialisations
        for c in range(lo, hi):
            best = max(best, row[c])
    else:
        for c in range(lo, hi):
            best = max(best, row[c] if col_free[c] else np.float32(-np.inf))
    return best


@njit(cache=True)
def _sift_down_min(values, size, i):
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and values[child + 1] < values[child]:
            child += 1
        if not values[child] < values[i]:
            return
        values[i], values[child] = values[child], values[i]
        i = child


@njit(cache=True)
def _kth_largest(values, k, scratch):
    """The ``k``-th largest of ``values`` (``k <= values.size``), using ``scratch[:k]``."""
    scratch[:k] = values[:k]
    for i in range(k // 2 - 1, -1, -1):
        _sift_down_min(scratch, k, i)
    for i in range(k, values.size):
        if values[i] > scratch[0]:
            scratch[0] = values[i]
            _sift_down_min(scratch, k, 0)
    return scratch[0]


@njit(cache=True)
def _gather_top_columns(row, col_free, k, out, block_max, scratch, values, columns):
    """The ``k`` best free columns of ``row`` (``C``), best first, into ``out[:k]``; or False.

    Best first: value descending, then column ascending. ``col_free`` None means every column.
    Most of the row is only read by a vectorised max per block of ``SCAN_BLOCK`` columns: the
    ``k``-th largest block maximum ``tau`` has ``k`` free entries at or above it, so only those
    entries are candidates. They are gathered in column order into ``values``/``columns``
    (scratch) and insertion-sorted, which is stable, so ties stay in column order. Returns False,
    leaving ``out`` unspecified, when fewer than ``k`` blocks hold a free column or the candidates
    overflow the scratch (many ties).
    """
    n = row.size
    num_blocks = (n + SCAN_BLOCK - 1) // SCAN_BLOCK
    full_blocks = n // SCAN_BLOCK
    if num_blocks < k:
        return False
    for b in range(full_blocks):  # constant bounds, so the max unrolls and vectorises
        block_max[b] = _span_max(row, col_free, b * SCAN_BLOCK, b * SCAN_BLOCK + SCAN_BLOCK)
    if full_blocks < num_blocks:
        block_max[full_blocks] = _span_max(row, col_free, full_blocks * SCAN_BLOCK, n)
    tau = _kth_largest(block_max[:num_blocks], k, scratch)
    if tau == -np.inf:
        return False
    m = 0
    for b in range(num_blocks):
        if block_max[b] < tau:
            continue
        for c in range(b * SCAN_BLOCK, min(b * SCAN_BLOCK + SCAN_BLOCK, n)):
            if row[c] >= tau and (col_free is None or col_free[c]):
                if m == values.size:
                    return False
                values[m] = row[c]
                columns[m] = c
                m += 1
    for i in range(1, m):  # stable insertion sort, value descending
        value, col = values[i], columns[i]
        j = i - 1
        while j >= 0 and values[j] < value:
            values[j + 1], columns[j + 1] = values[j], columns[j]
            j -= 1
        values[j + 1], columns[j + 1] = value, col
    out[:k] = columns[:k]
    return True


@njit(cache=True)
def _initial_candidates(sim, k, pool, scratch):
    """Each row's ``k`` best columns, best first: row ``r`` into ``pool[r*k : (r+1)*k]``."""
    block_max, heap_scratch, values, columns = scratch[:4]
    for r in range(sim.shape[0]):
        out = pool[r * k:(r + 1) * k]
        if not _gather_top_columns(sim[r], None, k, out, block_max, heap_scratch, values, columns):
            _top_columns_by_heap(sim[r], k, out)


@njit(cache=True, inline="always")
def _descending_key(bits):
    """Map float32 bits to a uint32 that sorts ascending as the value sorts descending.

    Branch-free (signs are random). ``-0.0`` and ``0.0`` get the same key, as they compare equal.
    """
    bits = bits if bits != _SIGN else np.uint32(0)
    flip = np.uint32(0) - (bits >> np.uint32(31)) | _SIGN  # all ones if negative, else the sign
    return ~(bits ^ flip)


@njit(cache=True)
def _free_columns_in_order(row, col_free, out, keys, spare_keys, spare_cols, counts):
    """Every free column of ``row`` (``C``), best first, into ``out[:m]``; returns ``m``.

    A stable LSD radix sort (four 8-bit digits) of the descending keys; columns enter in
    ascending order, so stability breaks ties by column. The four digit histograms (``counts``,
    ``4 x 256``) are counted while the keys are built; a digit all keys share is skipped.
    ``keys``, ``spare_*``: ``C`` scratch.
    """
    bits = row.view(np.uint32)
    counts[:] = 0
    m = 0
    for c in range(row.size):  # branch-free compaction: a taken column is overwritten
        key = _descending_key(bits[c])
        keys[m] = key
        out[m] = c
        free = np.int64(col_free[c])
        for digit in range(4):
            counts[digit, (key >> (8 * digit)) & 255] += free
        m += free
    src_keys, src_cols, dst_keys, dst_cols = keys, out, spare_keys, spare_cols
    for digit in range(4):
        histogram = counts[digit]
        if histogram.max() == m:  # every key shares this digit: the pass would not move anything
            continue
        total = 0
        for d in range(256):
            total, histogram[d] = total + histogram[d], total
        shift = 8 * digit
        for i in range(m):
            d = (src_keys[i] >> shift) & 255
            dst_keys[histogram[d]] = src_keys[i]
            dst_cols[histogram[d]] = src_cols[i]
            histogram[d] += 1
        src_keys, src_cols, dst_keys, dst_cols = dst_keys, dst_cols, src_keys, src_cols
    if src_cols is not out:
        out[:m] = src_cols[:m]
    return m


@njit(cache=True, inline="always")
def _before(key, a, b):
    """Row ``a`` comes first in the greedy order: larger key, or equal key and smaller row."""
    return key[a] > key[b] or (key[a] == key[b] and a < b)


@njit(cache=True)
def _sift_down_rows(key, heap, size, i):
    """Restore the heap of rows (first in greedy order at the root) below position ``i``."""
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and _before(key, heap[child + 1], heap[child]):
            child += 1
        if not _before(key, heap[child], heap[i]):
            return
        heap[i], heap[child] = heap[child], heap[i]
        i = child


@njit(cache=True)
def _grown(pool, needed):
    bigger = np.empty(max(2 * pool.size, needed), dtype=pool.dtype)
    bigger[:pool.size] = pool
    return bigger


@njit(cache=True)
def _scratch(num_cols, most_candidates):
    """Work arrays shared by every row: block maxima, top-k heap, gather buffers, radix sort."""
    capacity = GATHER_PER_CANDIDATE * most_candidates
    return (np.empty((num_cols + SCAN_BLOCK - 1) // SCAN_BLOCK, dtype=np.float32),
            np.empty(most_candidates, dtype=np.float32),
            np.empty(capacity, dtype=np.float32), np.empty(capacity, dtype=np.int32),
            np.empty(num_cols, dtype=np.uint32), np.empty(num_cols, dtype=np.uint32),
            np.empty(num_cols, dtype=np.int32), np.empty((4, 256), dtype=np.int64))


@njit(cache=True)
def _refill(row, col_free, first_time, out, scratch):
    """New candidates, best first, for a row that ran out: into ``out[:m]``, returns ``m``.

    The first time, the ``REFILL_CANDIDATES`` best free columns; afterwards (or when that finds
    too few blocks or too many ties), every free column in order, which cannot run out.
    """
    block_max, heap_scratch, values, columns, keys, spare_keys, spare_cols, counts = scratch
    if first_time and _gather_top_columns(row, col_free, REFILL_CANDIDATES, out, block_max,
                                          heap_scratch, values, columns):
        return REFILL_CANDIDATES
    return _free_columns_in_order(row, col_free, out, keys, spare_keys, spare_cols, counts)


@njit(cache=True)
def _next_free(pool, start, stop, col_free):
    """The first position in ``pool[start:stop]`` whose column is free, or ``stop``."""
    p = start
    while p < stop and not col_free[pool[p]]:
        p += 1
    return p


@njit(cache=True)
def _row_heap(key):
    """Rows ``0..R-1`` as a binary heap in greedy order of ``key`` (``R`` float32)."""
    heap = np.arange(key.size)
    for i in range(key.size // 2 - 1, -1, -1):
        _sift_down_rows(key, heap, key.size, i)
    return heap


@njit(cache=True, nogil=True)
def greedy_kernel(sim):
    """Greedy matching of a validated ``R x C`` float32 C-contiguous ``sim`` (``R <= C``, finite).

    Returns ``R`` int64: the column of each row, identical to the reference.
    """
    num_rows, num_cols = sim.shape
    match = np.full(num_rows, -1, dtype=np.int64)
    if num_rows == 0:
        return match
    k = min(INITIAL_CANDIDATES, num_cols)
    scratch = _scratch(num_cols, max(k, REFILL_CANDIDATES))
    pool = np.empty(num_rows * k, dtype=np.int32)  # candidate columns, one segment per row
    _initial_candidates(sim, k, pool, scratch)
    pos = np.arange(num_rows) * k  # each row's current candidate: its best possibly free column
    stop = pos + k
    used = num_rows * k
    refilled = np.zeros(num_rows, dtype=np.bool_)
    col_free = np.ones(num_cols, dtype=np.bool_)
    key = np.empty(num_rows, dtype=np.float32)  # each row's value at its current candidate
    for r in range(num_rows):
        key[r] = sim[r, pool[pos[r]]]
    heap = _row_heap(key)
    size = num_rows
    while size > 0:
        r = heap[0]
        c = pool[pos[r]]
        if col_free[c]:  # the globally first free entry: accept it
            match[r] = c
            col_free[c] = False
            size -= 1
            heap[0] = heap[size]
            _sift_down_rows(key, heap, size, 0)
            continue
        p = _next_free(pool, pos[r] + 1, stop[r], col_free)
        if p == stop[r]:  # candidates used up: fetch more from the columns still free
            if used + num_cols > pool.size:
                pool = _grown(pool, used + num_cols)
            m = _refill(sim[r], col_free, not refilled[r], pool[used:used + num_cols], scratch)
            refilled[r] = True
            p, stop[r] = used, used + m
            used += m
        pos[r] = p
        key[r] = sim[r, pool[p]]
        _sift_down_rows(key, heap, size, 0)
    return match


def greedy_match_numba(sim) -> np.ndarray:
    """:func:`s3pot.kernels.greedy_match` compiled with Numba: ``R x C`` -> ``R`` int64, same result."""
    return greedy_kernel(check_similarity(sim))


def select_prompts_numba(z_e, z_re, face_mask) -> PromptSelection:
    """:func:`s3pot.kernels.select_prompts` with the Numba matcher; same inputs, same result."""
    return select_with(greedy_kernel, z_e, z_re, face_mask)
