"""The Numba CUDA kernels behind :mod:`s3pot.kernels.cuda` (imported by it once a GPU is known).

``cuda`` is a module global on purpose: the CUDA simulator swaps a kernel's global ``cuda`` for
its own, which it cannot do for a closure variable.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numba
from numba import cuda

from .reference import NORMALIZE_EPS

#: Side of the square tiles of the similarity GEMM (TILE x TILE threads per block).
TILE = 16
#: A tile row padded by one (no bank conflicts on reads); a global, so that Numba sees a constant.
TILE_PADDED = TILE + 1

float32 = numba.float32
int32 = numba.int32


@cuda.jit
def unit_rows(x, rows, out, bad):
    """``out[i] = x[rows[i]] / max(||x[rows[i]]||, eps)``: ``N x D``, ``N_out`` -> ``N_out x D``.

    One thread per output row; ``bad[0] = 1`` when a norm is not finite.
    """
    i = cuda.grid(1)
    if i >= rows.size:
        return
    r = rows[i]
    total = float32(0.0)
    for d in range(x.shape[1]):
        total += x[r, d] * x[r, d]
    norm = math.sqrt(total)
    if math.isnan(norm) or math.isinf(norm):
        bad[0] = 1  # every writer writes 1: the race is benign
    norm = max(norm, float32(NORMALIZE_EPS))
    for d in range(x.shape[1]):
        out[i, d] = x[r, d] / norm


@cuda.jit
def similarity(a, b, out):
    """``out = a · bᵀ``: ``R x D``, ``N x D`` -> ``R x N``, one ``TILE x TILE`` block per tile."""
    tile_a = cuda.shared.array((TILE, TILE), float32)
    tile_b = cuda.shared.array((TILE, TILE_PADDED), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    b_row = cuda.blockIdx.x * TILE + ty  # the row of b this thread loads
    total = float32(0.0)
    for start in range(0, a.shape[1], TILE):
        k = start + tx
        tile_a[ty, tx] = a[row, k] if row < a.shape[0] and k < a.shape[1] else float32(0.0)
        tile_b[ty, tx] = b[b_row, k] if b_row < b.shape[0] and k < b.shape[1] else float32(0.0)
        cuda.syncthreads()
        for j in range(TILE):
            total += tile_a[ty, j] * tile_b[tx, j]
        cuda.syncthreads()
    if row < out.shape[0] and col < out.shape[1]:
        out[row, col] = total


@cuda.jit
def any_nonfinite(x, bad):
    """``bad[0] = 1`` if the 2-D ``x`` holds a NaN or Inf; one thread per entry."""
    i, j = cuda.grid(2)
    if i < x.shape[0] and j < x.shape[1] and (math.isnan(x[i, j]) or math.isinf(x[i, j])):
        bad[0] = 1


@cuda.jit
def col_best(sim, row_free, col_free, best_row):
    """One thread per column: its best free row (ties: lowest), unless its last one is still free."""
    c = cuda.grid(1)
    if c >= sim.shape[1] or not col_free[c] or (best_row[c] >= 0 and row_free[best_row[c]]):
        return
    value = float32(-math.inf)
    row = sim.shape[0]
    for r in range(sim.shape[0]):  # ascending with a strict test: a tie keeps the lower row
        if row_free[r] and sim[r, c] > value:
            value, row = sim[r, c], r
    best_row[c] = row


@cuda.jit
def pair(best_col, best_row, row_free, col_free, match, matched):
    """One thread per row: match the row and its best column if each is the other's best."""
    r = cuda.grid(1)
    if r < best_col.size and row_free[r] and best_row[best_col[r]] == r:
        c = best_col[r]
        match[r] = c
        row_free[r] = 0  # only this thread touches row r and column c
        col_free[c] = 0
        cuda.atomic.add(matched, 0, 1)


def build(threads_per_row: int) -> SimpleNamespace:
    """The kernels, with :func:`row_best` sized for ``threads_per_row`` (a power of two)."""

    @cuda.jit
    def row_best(sim, row_free, col_free, best_col):
        """One block per row: its best free column (ties: lowest), unless its last one is free."""
        r = cuda.blockIdx.x
        if not row_free[r] or (best_col[r] >= 0 and col_free[best_col[r]]):
            return  # the whole block leaves together, before any barrier
        tid = cuda.threadIdx.x
        value = float32(-math.inf)
        col = sim.shape[1]
        for c in range(tid, sim.shape[1], threads_per_row):  # ascending, strict: ties keep first
            if col_free[c] and sim[r, c] > value:
                value, col = sim[r, c], c
        values = cuda.shared.array(threads_per_row, float32)
        cols = cuda.shared.array(threads_per_row, int32)
        values[tid] = value
        cols[tid] = col
        cuda.syncthreads()
        half = threads_per_row // 2
        while half > 0:
            if tid < half:
                other, other_col = values[tid + half], cols[tid + half]
                if other > values[tid] or (other == values[tid] and other_col < cols[tid]):
                    values[tid] = other
                    cols[tid] = other_col
            cuda.syncthreads()
            half //= 2
        if tid == 0:
            best_col[r] = cols[0]

    return SimpleNamespace(TILE=TILE, unit_rows=unit_rows, similarity=similarity,
                           any_nonfinite=any_nonfinite, row_best=row_best, col_best=col_best,
                           pair=pair)
