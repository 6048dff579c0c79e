"""Token-grid kernels: the initial prompt and greedy prompt selection (SPEC stages 2 and 4).

The plain NumPy reference (:mod:`.reference`) is the oracle. The Numba CPU kernel
(:mod:`.numba_cpu`) equals it bit for bit; the CUDA kernel (:mod:`.cuda`) gives the same matching
on the same similarity matrix, which it computes on the device up to float32 rounding.
:func:`select_prompts` picks the backend. NumPy only at import time: Numba is imported by the
backends that need it. Constants and exceptions live in :mod:`s3pot.core`.
"""
from .reference import PromptSelection, greedy_match, initial_prompt
from .selection import AUTO_BACKEND, SELECTION_BACKENDS, select_prompts

__all__ = ["AUTO_BACKEND", "PromptSelection", "SELECTION_BACKENDS", "greedy_match",
           "initial_prompt", "select_prompts"]
