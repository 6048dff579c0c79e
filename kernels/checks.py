"""Input validation shared by every kernel backend.

Each check raises :class:`~s3pot.core.errors.S3potInputError` naming the array, what was expected
and what arrived, and returns the array in the layout the kernels compute on (C-contiguous, the
dtype stated below), so backends never re-validate.
"""
from __future__ import annotations

import numpy as np

from s3pot.core.errors import NoFaceTokensError, S3potInputError
from s3pot.core.spec import GRID_SIZE, NUM_TOKENS, PROMPT_DIM


def _describe(array) -> str:
    return f"shape {tuple(np.shape(array))}, dtype {getattr(array, 'dtype', type(array).__name__)}"


def check_finite(array: np.ndarray, name: str) -> None:
    """Reject NaN and +-Inf: greedy matching has no order for them."""
    if not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise S3potInputError(f"{name}: expected finite values, got {bad} NaN/Inf entries")


def check_similarity(sim, name: str = "similarity matrix") -> np.ndarray:
    """A similarity matrix for greedy matching: ``R x C`` float32 with ``R <= C``, all finite.

    Any floating dtype is accepted and cast to float32 (the dtype every backend compares in).
    """
    sim = np.asarray(sim)
    if sim.ndim != 2 or not np.issubdtype(sim.dtype, np.floating):
        raise S3potInputError(f"{name}: expected a 2-D float array (R x C), got {_describe(sim)}")
    rows, cols = sim.shape
    if rows > cols:
        raise S3potInputError(
            f"{name}: expected no more rows than columns (R <= C) so every row can be matched, "
            f"got R={rows} > C={cols}")
    sim = np.ascontiguousarray(sim, dtype=np.float32)
    check_finite(sim, name)
    return sim


def check_tokens(tokens, name: str) -> np.ndarray:
    """FE output tokens in raster order: ``NUM_TOKENS x PROMPT_DIM`` (4096 x 256), cast to float32.

    Finiteness is left to :func:`~s3pot.kernels.reference.unit_rows`, whose norms show it for free.
    """
    tokens = np.asarray(tokens)
    expected = (NUM_TOKENS, PROMPT_DIM)
    if tokens.shape != expected or not np.issubdtype(tokens.dtype, np.floating):
        raise S3potInputError(
            f"{name}: expected float tokens of shape {expected} (tokens x channels, raster order), "
            f"got {_describe(tokens)}")
    return np.ascontiguousarray(tokens, dtype=np.float32)


def check_feature_map(features, name: str) -> np.ndarray:
    """Encoder features: ``C x GRID_SIZE x GRID_SIZE`` (C x 64 x 64) float, any channel count."""
    features = np.asarray(features)
    if (features.ndim != 3 or features.shape[1:] != (GRID_SIZE, GRID_SIZE)
            or not np.issubdtype(features.dtype, np.floating)):
        raise S3potInputError(
            f"{name}: expected float features of shape C x {GRID_SIZE} x {GRID_SIZE}, "
            f"got {_describe(features)}")
    check_finite(features, name)
    return features


def check_face_mask(face_mask, name: str = "face mask") -> np.ndarray:
    """The token-level face mask ``M_f``: ``GRID_SIZE x GRID_SIZE`` (64 x 64), returned flat.

    Bool, or integers holding only 0 and 1. At least one token must be face
    (:class:`NoFaceTokensError` otherwise). Returns a ``NUM_TOKENS`` bool vector in raster order.
    """
    mask = np.asarray(face_mask)
    if mask.shape != (GRID_SIZE, GRID_SIZE):
        raise S3potInputError(
            f"{name}: expected a {GRID_SIZE} x {GRID_SIZE} token mask, got {_describe(mask)}")
    if mask.dtype != np.bool_:
        if not np.issubdtype(mask.dtype, np.integer) or not np.isin(mask, (0, 1)).all():
            raise S3potInputError(f"{name}: expected bool (or 0/1 integers), got {_describe(mask)}")
        mask = mask.astype(bool)
    flat = mask.reshape(NUM_TOKENS)  # raster order t = y * GRID_SIZE + x
    if not flat.any():
        raise NoFaceTokensError(
            f"{name}: no token is a face token, so there is no face to compare against; "
            "check the parsing mask and the face label set")
    return flat
