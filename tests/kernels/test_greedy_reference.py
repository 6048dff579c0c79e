"""The reference greedy matching against the paper's Algorithm 1, and its input contract."""
from __future__ import annotations

import numpy as np
import pytest

from greedy_cases import MATRIX_KINDS, algorithm_1, similarity_case
from s3pot.core.errors import S3potInputError
from s3pot.kernels import greedy_match

SHAPES = [(1, 1), (1, 7), (3, 3), (5, 17), (12, 12), (16, 40), (33, 70)]


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_equals_algorithm_1(kind, shape):
    sim = similarity_case(kind, *shape, seed=sum(shape))
    np.testing.assert_array_equal(greedy_match(sim), algorithm_1(sim))


def test_reference_equals_algorithm_1_on_a_larger_matrix():
    sim = similarity_case("two_bits", 120, 300, seed=3)
    np.testing.assert_array_equal(greedy_match(sim), algorithm_1(sim))


def test_ties_go_to_the_lower_row_then_the_lower_column():
    sim = np.array([[1.0, 2.0, 2.0],
                    [2.0, 2.0, 0.0]], dtype=np.float32)
    # (0, 1) is the first 2.0 in row-major order; then row 1's best free column is 0.
    np.testing.assert_array_equal(greedy_match(sim), [1, 0])


def test_all_equal_pairs_along_the_diagonal():
    np.testing.assert_array_equal(greedy_match(np.ones((4, 6), np.float32)), np.arange(4))


def test_result_is_an_injective_int64_vector():
    match = greedy_match(similarity_case("normal", 50, 60))
    assert match.dtype == np.int64 and match.shape == (50,)
    assert len(set(match.tolist())) == 50 and match.min() >= 0 and match.max() < 60


def test_square_matrix_gives_a_permutation():
    match = greedy_match(similarity_case("integers", 30, 30))
    np.testing.assert_array_equal(np.sort(match), np.arange(30))


def test_float64_and_non_contiguous_input_are_accepted():
    sim = similarity_case("normal", 20, 40).astype(np.float64)
    np.testing.assert_array_equal(greedy_match(sim[:, ::-1]), algorithm_1(sim[:, ::-1]))


def test_zero_rows_give_an_empty_matching():
    match = greedy_match(np.zeros((0, 5), np.float32))
    assert match.dtype == np.int64 and match.shape == (0,)


@pytest.mark.parametrize("bad, expected", [
    (np.array([[0.5, np.nan]], np.float32), "finite"),
    (np.array([[np.inf, 0.0]], np.float32), "finite"),
    (np.array([[-np.inf, 0.0]], np.float32), "finite"),
    (np.zeros((3, 2), np.float32), "R <= C"),
    (np.zeros(5, np.float32), "2-D float"),
    (np.zeros((2, 2, 2), np.float32), "2-D float"),
    (np.zeros((2, 3), np.int64), "2-D float"),
])
def test_bad_matrices_raise_input_errors_naming_the_matrix(bad, expected):
    with pytest.raises(S3potInputError, match=expected) as error:
        greedy_match(bad)
    assert "similarity matrix" in str(error.value)
