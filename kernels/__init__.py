"""Token-grid kernels: the initial prompt and greedy prompt selection (SPEC stages 2 and 4).

The plain NumPy reference (:mod:`.reference`) is the oracle. The Numba CPU kernel
(:mod:`.numba_cpu`) equals it bit for bit; the CUDA kernel (:mod:`.cuda`) gives the same matching
on the same similarity matrix, which it computes on the device up to float32 rounding.
:func:`select_prompts` picks the backend. NumPy only at import time: Numba is imported by the
backends that need it.
"""
from .errors import (CheckpointError, MissingDependencyError, NoFaceTokensError, S3potError,
                     S3potInputError)
from .spec import (GRID_SIZE, IMAGE_SIZE, NUM_TOKENS, PATCH_SIZE, PROMPT_DIM, face_token_mask,
                   resolve_face_set, token_centers)
from .reference import PromptSelection, greedy_match, initial_prompt
from .selection import AUTO_BACKEND, SELECTION_BACKENDS, select_prompts

__all__ = [
    "AUTO_BACKEND", "CheckpointError", "GRID_SIZE", "IMAGE_SIZE", "MissingDependencyError",
    "NUM_TOKENS", "NoFaceTokensError", "PATCH_SIZE", "PROMPT_DIM", "PromptSelection",
    "S3potError", "S3potInputError", "SELECTION_BACKENDS", "face_token_mask", "greedy_match",
    "initial_prompt", "resolve_face_set", "select_prompts", "token_centers",
]
