"""The CUDA kernels on a real GPU at the runtime's sizes; skipped without one."""
from __future__ import annotations

import numpy as np
import pytest

from greedy_cases import face_tokens_sample, similarity_case
from s3pot.kernels import greedy_match, select_prompts
from s3pot.kernels.reference import split_matches


def _real_gpu() -> bool:
    try:
        import numba
        from numba import cuda
    except ImportError:
        return False
    return not numba.config.ENABLE_CUDASIM and cuda.is_available()


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _real_gpu(), reason="needs an NVIDIA GPU visible to numba")]


class _Interface:
    """Only ``__cuda_array_interface__``, as TensorRT / pycuda buffers are commonly wrapped."""

    def __init__(self, device_array):
        self._keep = device_array
        self.__cuda_array_interface__ = device_array.__cuda_array_interface__


@pytest.mark.parametrize("kind, rows, cols", [("normal", 1500, 4096), ("integers", 800, 4096),
                                              ("hub", 600, 4096), ("two_bits", 4096, 4096)])
def test_device_matching_equals_reference(kind, rows, cols):
    from numba import cuda

    from s3pot.kernels.cuda import greedy_match_cuda

    sim = similarity_case(kind, rows, cols, seed=rows)
    expected = greedy_match(sim)
    np.testing.assert_array_equal(greedy_match_cuda(sim), expected)
    np.testing.assert_array_equal(greedy_match_cuda(_Interface(cuda.to_device(sim))), expected)


def test_device_selection_equals_reference_matching_on_its_own_matrix():
    """Exact: the matching of the device's S equals the reference run on that S copied back."""
    from numba import cuda

    from s3pot.kernels.cuda import select_prompts_cuda, similarity_cuda

    z_e, z_re, face, _ = face_tokens_sample(seed=2, noise=1.0)
    device_e, device_re = cuda.to_device(z_e), cuda.to_device(z_re)
    sim = similarity_cuda(device_e, _Interface(device_re), face).copy_to_host()
    expected = split_matches(greedy_match(sim), face.reshape(-1))
    got = select_prompts_cuda(device_e, _Interface(device_re), face)
    np.testing.assert_array_equal(got.occlusion, expected.occlusion)
    np.testing.assert_array_equal(got.face, expected.face)


def test_device_selection_equals_cpu_selection_with_clear_margins():
    """Within rounding: S differs from the CPU's by ~1e-7, far below this sample's gaps."""
    z_e, z_re, face, _ = face_tokens_sample(seed=3, noise=0.1)
    got = select_prompts(z_e, z_re, face, backend="cuda")
    expected = select_prompts(z_e, z_re, face, backend="reference")
    np.testing.assert_array_equal(got.occlusion, expected.occlusion)
    np.testing.assert_array_equal(got.face, expected.face)
