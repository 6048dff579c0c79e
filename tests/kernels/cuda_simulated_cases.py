"""The CUDA kernels under Numba's CUDA simulator, at small sizes (each thread is a Python thread).

Not collected on its own (no ``test_`` prefix): ``test_cuda_simulator.py`` runs this file in a
subprocess with ``NUMBA_ENABLE_CUDASIM=1``, which must be set before ``numba.cuda`` is imported.
"""
from __future__ import annotations

import numpy as np
import pytest

from greedy_cases import similarity_case
from s3pot.core.errors import S3potInputError
from s3pot.kernels import greedy_match
from s3pot.kernels.reference import similarity_matrix, split_matches, unit_rows

numba = pytest.importorskip("numba")
if not numba.config.ENABLE_CUDASIM:
    pytest.skip("run through test_cuda_simulator.py (needs NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numba import cuda  # noqa: E402  (after the simulator check on purpose)

from s3pot.kernels import cuda as gpu  # noqa: E402

CASES = [("normal", 5, 20), ("normal", 12, 48), ("integers", 6, 12), ("all_equal", 4, 4),
         ("rank_one", 5, 9), ("hub", 6, 30), ("two_bits", 1, 9), ("signed_zeros", 6, 6)]


@pytest.mark.parametrize("kind, rows, cols", CASES)
def test_device_matching_equals_reference(kind, rows, cols):
    sim = similarity_case(kind, rows, cols, seed=rows + cols)
    expected = greedy_match(sim)
    np.testing.assert_array_equal(gpu.greedy_match_cuda(cuda.to_device(sim)), expected)


def test_host_input_is_copied_and_matched():
    sim = similarity_case("normal", 3, 7, seed=1)
    np.testing.assert_array_equal(gpu.greedy_match_cuda(sim), greedy_match(sim))


@pytest.mark.parametrize("bad, expected", [
    (np.array([[0.0, np.nan, 1.0]], np.float32), "finite"),
    (np.zeros((3, 2), np.float32), "R <= C"),
    (np.zeros((2, 3), np.float64), "float32 device array"),
])
def test_bad_device_matrices_raise_input_errors(bad, expected):
    with pytest.raises(S3potInputError, match=expected):
        gpu.greedy_match_cuda(cuda.to_device(bad))


def test_selection_pieces_on_device_match_the_cpu_on_the_same_matrix():
    """What ``select_prompts_cuda`` composes, at 40 tokens x 8 channels instead of 4096 x 256."""
    rng = np.random.default_rng(0)
    z_e = rng.standard_normal((40, 8)).astype(np.float32)
    z_re = z_e + 0.3 * rng.standard_normal((40, 8)).astype(np.float32)
    z_re[3] = 0.0  # a zero token stays zero after normalisation
    face = np.zeros(40, bool)
    face[[1, 3, 5, 8, 13, 21, 34]] = True
    rows = np.flatnonzero(face)
    sim = gpu.similarity_on_device(cuda.to_device(z_e), cuda.to_device(z_re), rows)
    on_host = sim.copy_to_host()
    cpu = similarity_matrix(unit_rows(z_re[rows]), unit_rows(z_e))
    np.testing.assert_allclose(on_host, cpu, rtol=0, atol=1e-6)  # float32 rounding only
    match = gpu.match_on_device(sim)
    np.testing.assert_array_equal(match, greedy_match(on_host))  # exact on the same matrix
    selection = split_matches(np.asarray(match), np.pad(face, (0, 4096 - 40)))
    assert np.union1d(*selection).tolist() == rows.tolist()


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator's inf / inf
def test_non_finite_tokens_are_rejected_on_device():
    z = np.ones((6, 4), np.float32)
    z[2, 1] = np.inf
    with pytest.raises(S3potInputError, match="finite"):
        gpu.similarity_on_device(cuda.to_device(z), cuda.to_device(np.ones((6, 4), np.float32)),
                                 np.array([0, 1]))


def test_selection_rejects_wrong_token_shapes_before_any_kernel():
    with pytest.raises(S3potInputError, match="z_e \\(image tokens\\)"):
        gpu.select_prompts_cuda(cuda.to_device(np.zeros((40, 8), np.float32)),
                                np.zeros((4096, 256), np.float32), np.ones((64, 64), bool))
