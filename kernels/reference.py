"""The plain NumPy reference of SPEC stages 2 and 4: the oracle every other backend must equal.

It also defines, once, the pieces the CPU backends share so that they compute bit-identical
similarity matrices: :func:`unit_rows` (the normalisation), :func:`similarity_matrix` (one float32
BLAS GEMM) and :func:`split_matches` (turning a matching into the two prompt sets).
"""
from __future__ import annotations

import logging
from typing import Callable, NamedTuple

import numpy as np

from .checks import check_face_mask, check_feature_map, check_similarity, check_tokens
from s3pot.core.errors import S3potInputError
from s3pot.core.spec import NUM_TOKENS

logger = logging.getLogger(__name__)

#: Lower bound on a token's norm before dividing by it, as ``torch.nn.functional.normalize``.
NORMALIZE_EPS = 1e-12
#: Lower bound on each norm in the cosine, as ``torch.nn.functional.cosine_similarity``.
COSINE_EPS = 1e-8


class PromptSelection(NamedTuple):
    """The two prompt sets of SPEC stage 4, as token indices in ascending (raster) order.

    ``occlusion`` (``P_O``, int64): face tokens of the image that no reference face token matched.
    ``face`` (``P_N``, int64): matched image tokens that are face tokens.
    Together they are exactly the face tokens, each once.
    """

    occlusion: np.ndarray
    face: np.ndarray


def greedy_match(sim) -> np.ndarray:
    """Greedy matching of the rows of an ``R x C`` similarity matrix (``R <= C``) to columns.

    Repeatedly takes the largest entry whose row and column are both free and pairs them.
    Ties go to the smaller flat row-major index (smaller row, then smaller column). This is the
    order of a stable sort of ``-sim.ravel()``; scanning it and accepting every entry whose row and
    column are still free is the definition used here.

    Returns an int64 vector of length ``R``: the column matched to each row. ``R == 0`` gives an
    empty vector. Raises :class:`S3potInputError` for anything but a finite 2-D float matrix with
    ``R <= C``.
    """
    sim = check_similarity(sim)
    num_rows, num_cols = sim.shape
    match = np.full(num_rows, -1, dtype=np.int64)
    if num_rows == 0:
        return match
    order = np.argsort(-sim, axis=None, kind="stable")  # R*C flat indices, value desc, index asc
    row_free = np.ones(num_rows, dtype=bool)
    col_free = np.ones(num_cols, dtype=bool)
    matched, start, chunk = 0, 0, num_rows
    while matched < num_rows:
        rows, cols = np.divmod(order[start:start + chunk], num_cols)
        # Entries dead before the chunk starts are dropped in bulk; the loop re-checks the rest.
        alive = row_free[rows] & col_free[cols]
        for row, col in zip(rows[alive].tolist(), cols[alive].tolist()):
            if row_free[row] and col_free[col]:
                match[row] = col
                row_free[row] = col_free[col] = False
                matched += 1
        start, chunk = start + chunk, 2 * chunk
    return match


def unit_rows(x: np.ndarray, name: str = "tokens") -> np.ndarray:
    """Each row divided by ``max(||row||_2, NORMALIZE_EPS)``, in float32: ``N x D`` -> ``N x D``.

    As ``torch.nn.functional.normalize(x, dim=1)``; a zero row stays zero. The norms double as
    the finiteness check (a NaN/Inf entry, or a norm beyond float32, makes a norm non-finite),
    which raises :class:`S3potInputError` naming ``name`` and the tokens.
    """
    norms = np.sqrt(np.einsum("nd,nd->n", x, x))  # N
    if not np.isfinite(norms).all():
        bad = np.flatnonzero(~np.isfinite(norms))
        raise S3potInputError(
            f"{name}: expected finite token vectors, got NaN/Inf (or a norm beyond float32) in "
            f"{bad.size} token(s), first {bad[:5].tolist()}")
    return x / np.maximum(norms, np.float32(NORMALIZE_EPS))[:, None]


def similarity_matrix(ref_rows: np.ndarray, image_tokens: np.ndarray) -> np.ndarray:
    """``S = ref_rows · image_tokensᵀ`` as one float32 GEMM: ``R x D``, ``N x D`` -> ``R x N``.

    Every CPU backend calls this very function, so all of them match on the same bits.
    """
    return np.dot(ref_rows, image_tokens.T)


def similarity_for_selection(z_e: np.ndarray, z_re: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The matrix SPEC stage 4 matches on: ``N_f x NUM_TOKENS`` float32.

    ``z_e``, ``z_re``: validated ``NUM_TOKENS x D`` float32 tokens; ``face``: the flat
    ``NUM_TOKENS`` bool face mask. Rows are the face tokens of ``z_re`` in raster order, columns all
    tokens of ``z_e``, both normalised by :func:`unit_rows`.
    """
    ref_rows = unit_rows(z_re[face], "z_re (reference tokens), face rows")  # N_f x D
    return similarity_matrix(ref_rows, unit_rows(z_e, "z_e (image tokens)"))  # N_f x NUM_TOKENS


def split_matches(match: np.ndarray, face: np.ndarray) -> PromptSelection:
    """Turn a matching into prompt sets. ``match``: ``N_f`` image token per reference face token;
    ``face``: ``NUM_TOKENS`` bool. ``P_N`` = matched face tokens, ``P_O`` = unmatched face tokens."""
    matched = np.zeros(NUM_TOKENS, dtype=bool)
    matched[match] = True
    return PromptSelection(occlusion=np.flatnonzero(face & ~matched),
                           face=np.flatnonzero(face & matched))


def select_with(matcher: Callable[[np.ndarray], np.ndarray], z_e, z_re,
                face_mask) -> PromptSelection:
    """SPEC stage 4 with a given matcher (``R x C`` float32 -> ``R`` int64, inputs pre-validated).

    ``z_e``, ``z_re``: ``NUM_TOKENS x PROMPT_DIM`` (4096 x 256) FE tokens; ``face_mask``:
    ``GRID_SIZE x GRID_SIZE`` bool.
    """
    face = check_face_mask(face_mask)
    z_e = check_tokens(z_e, "z_e (image tokens)")
    z_re = check_tokens(z_re, "z_re (reference tokens)")
    sim = similarity_for_selection(z_e, z_re, face)  # N_f x NUM_TOKENS
    selection = split_matches(matcher(sim), face)
    logger.debug("%d face tokens: %d occlusion prompts, %d face prompts", sim.shape[0],
                 selection.occlusion.size, selection.face.size)
    return selection


def select_prompts_reference(z_e, z_re, face_mask) -> PromptSelection:
    """SPEC stage 4 with :func:`greedy_match`; see :func:`s3pot.kernels.select_prompts`."""
    return select_with(greedy_match, z_e, z_re, face_mask)


def cosine_per_token(z: np.ndarray, z_r: np.ndarray) -> np.ndarray:
    """Cosine over channels at every token: ``C x H x W`` twice -> ``H*W`` float64, raster order.

    ``dot / (max(||z||, COSINE_EPS) * max(||z_r||, COSINE_EPS))`` as
    ``torch.nn.functional.cosine_similarity``, computed in float64 so that rounding does not pick
    the argmax among near-equal tokens.
    """
    a = z.reshape(z.shape[0], -1).astype(np.float64)  # C x H*W
    b = z_r.reshape(z_r.shape[0], -1).astype(np.float64)
    dots = np.einsum("ct,ct->t", a, b)
    norms = np.maximum(np.linalg.norm(a, axis=0), COSINE_EPS) * np.maximum(
        np.linalg.norm(b, axis=0), COSINE_EPS)
    return dots / norms


def initial_prompt(z, z_r, face_mask) -> int:
    """SPEC stage 2: the face token where image and reference features agree best.

    ``z``, ``z_r``: encoder features ``C x 64 x 64`` (float, same shape); ``face_mask``: ``64 x 64``
    bool. Returns the raster index ``t = y * 64 + x`` of the face token with the highest cosine
    (:func:`cosine_per_token`); the lowest index wins a tie. No face token raises
    :class:`NoFaceTokensError`.
    """
    face = check_face_mask(face_mask)
    z = check_feature_map(z, "z (image features)")
    z_r = check_feature_map(z_r, "z_r (reference features)")
    if z.shape != z_r.shape:
        raise S3potInputError(
            f"z_r (reference features): expected the image features' shape {z.shape}, got {z_r.shape}")
    face_tokens = np.flatnonzero(face)
    scores = cosine_per_token(z, z_r)[face_tokens]
    return int(face_tokens[np.argmax(scores)])  # argmax returns the first maximum
