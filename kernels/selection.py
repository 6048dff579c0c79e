"""Prompt selection (SPEC stage 4) behind one entry point, whatever backend computes it.

Backends, all returning the same :class:`~s3pot.kernels.reference.PromptSelection`:

``reference``
    plain NumPy (:mod:`s3pot.kernels.reference`), the oracle; sorts every entry of ``S``.
``numba``
    the Numba CPU kernel (:mod:`s3pot.kernels.numba_cpu`), bit-identical to the reference.
``cuda``
    Numba CUDA (:mod:`s3pot.kernels.cuda`), takes device arrays; same matching on its own ``S``.
``auto``
    ``numba``.

Backend modules are imported on first use, so ``import s3pot.kernels`` needs only NumPy.
"""
from __future__ import annotations

import importlib
import logging

from s3pot.core.errors import S3potInputError
from .reference import PromptSelection

logger = logging.getLogger(__name__)

#: backend name -> (module under s3pot.kernels, function name)
SELECTION_BACKENDS = {
    "reference": ("reference", "select_prompts_reference"),
    "numba": ("numba_cpu", "select_prompts_numba"),
    "cuda": ("cuda", "select_prompts_cuda"),
}
#: What ``backend="auto"`` means.
AUTO_BACKEND = "numba"


def resolve_backend(backend: str) -> str:
    """The concrete backend name for ``backend`` (``"auto"`` resolved); unknown names fail loudly."""
    name = AUTO_BACKEND if backend == "auto" else backend
    if name not in SELECTION_BACKENDS:
        raise S3potInputError(
            f"selection backend: expected one of {sorted(SELECTION_BACKENDS) + ['auto']}, "
            f"got {backend!r}")
    return name


def select_prompts(z_e, z_re, face_mask, backend: str = "auto") -> PromptSelection:
    """SPEC stage 4: occlusion and face prompts by greedy matching of FE tokens.

    Arguments:
      z_e: image tokens after FE, ``4096 x 256`` (tokens x channels, raster order), float.
      z_re: reference tokens after FE, same layout.
      face_mask: token face mask ``M_f``, ``64 x 64`` bool.
      backend: ``"reference"``, ``"numba"``, ``"cuda"`` or ``"auto"`` (= ``"numba"``). ``"cuda"``
        also takes device arrays (``__cuda_array_interface__``) for ``z_e`` and ``z_re``.

    Returns ``PromptSelection(occlusion, face)``: int64 token indices in ascending raster order;
    ``occlusion`` (``P_O``) are face tokens no reference face token matched, ``face`` (``P_N``)
    the matched face tokens. Raises :class:`NoFaceTokensError` when ``face_mask`` has no face token
    and :class:`S3potInputError` for any other bad input.
    """
    name = resolve_backend(backend)
    module_name, function_name = SELECTION_BACKENDS[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, function_name)(z_e, z_re, face_mask)
