"""Inputs for the kernel tests: random matrices and the hard cases for greedy matching (exact ties,
all-equal entries, rows sharing one column order, signed zeros), the paper's Algorithm 1 as an
independent oracle, and FE-like tokens of an occluded face.

Imported by the test modules beside it (pytest puts this folder on ``sys.path``)."""
from __future__ import annotations

import numpy as np

from s3pot.core.spec import GRID_SIZE, NUM_TOKENS, PROMPT_DIM


def similarity_case(kind: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """An ``rows x cols`` float32 matrix of the given ``kind`` (see :data:`MATRIX_KINDS`)."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        sim = rng.standard_normal((rows, cols))
    elif kind == "integers":  # three values: almost every comparison is a tie
        sim = rng.integers(0, 3, (rows, cols))
    elif kind == "two_bits":  # uniform [0, 1) rounded to quarters
        sim = np.round(rng.random((rows, cols)) * 4) / 4
    elif kind == "all_equal":
        sim = np.full((rows, cols), 0.5)
    elif kind == "rank_one":  # every row prefers the same columns: the most conflicts
        sim = np.outer(rng.random(rows), rng.random(cols))
    elif kind == "hub":  # a few columns attractive to every row
        sim = 0.1 * rng.standard_normal((rows, cols)) + rng.standard_normal(cols)[None, :]
    elif kind == "signed_zeros":  # -0.0 == 0.0, so these tie as well
        sim = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0]), size=(rows, cols))
    else:
        raise ValueError(kind)
    return sim.astype(np.float32)


MATRIX_KINDS = ("normal", "integers", "two_bits", "all_equal", "rank_one", "hub", "signed_zeros")


def algorithm_1(sim: np.ndarray) -> np.ndarray:
    """The paper's Algorithm 1, transcribed literally, in SPEC's orientation.

    ``sim``: ``R x C`` (rows = reference face tokens, as SPEC pins it; the paper writes the
    transpose). For k = 1..R: the argmax of ``S`` over free rows and free columns, the first
    maximum in row-major order; append the pair; retire its row and its column.
    """
    num_rows, num_cols = sim.shape
    rows_free = np.ones(num_rows, dtype=bool)
    cols_free = np.ones(num_cols, dtype=bool)
    matched_pairs = []
    for _ in range(num_rows):
        masked = np.where(rows_free[:, None] & cols_free[None, :], sim, -np.inf)
        i, j = np.unravel_index(np.argmax(masked), sim.shape)  # argmax: first maximum
        matched_pairs.append((i, j))
        rows_free[i] = False
        cols_free[j] = False
    match = np.full(num_rows, -1, dtype=np.int64)
    for i, j in matched_pairs:
        match[i] = j
    return match


def face_tokens_sample(seed: int = 0, occluded=(slice(30, 40), slice(20, 44)), noise: float = 0.1):
    """FE-like tokens of a face with an occluded patch: ``(z_e, z_re, face_mask, occluded_mask)``.

    ``z_re``: random ``4096 x 256``; ``z_e`` = ``z_re`` plus small noise, except the occluded
    face tokens, which are replaced by unrelated vectors. The face is a disc of the 64 x 64 grid.
    """
    rng = np.random.default_rng(seed)
    z_re = rng.standard_normal((NUM_TOKENS, PROMPT_DIM)).astype(np.float32)
    z_e = z_re + noise * rng.standard_normal(z_re.shape).astype(np.float32)
    ys, xs = np.mgrid[:GRID_SIZE, :GRID_SIZE]
    face = (ys - 32) ** 2 + (xs - 32) ** 2 < 22 ** 2  # 64 x 64
    occluded_mask = np.zeros_like(face)
    occluded_mask[occluded] = True
    occluded_mask &= face
    flat = occluded_mask.reshape(NUM_TOKENS)
    z_e[flat] = rng.standard_normal((int(flat.sum()), PROMPT_DIM)).astype(np.float32)
    return z_e, z_re, face, occluded_mask
