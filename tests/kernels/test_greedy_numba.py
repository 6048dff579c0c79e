"""The Numba CPU kernel: the same matching as the reference, bit for bit, on every kind of matrix,
and the fused selection equal to the reference selection."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from greedy_cases import MATRIX_KINDS, face_tokens_sample, similarity_case
from s3pot.core.errors import S3potInputError
from s3pot.kernels import greedy_match, select_prompts

numba_cpu = pytest.importorskip("s3pot.kernels.numba_cpu")

# Small shapes hit every path: fewer columns than one scan block, a partial last block, R = C,
# one row; the large ones are the sizes the runtime sees (C = 4096 tokens).
SMALL_SHAPES = [(1, 1), (1, 3), (2, 2), (4, 4), (3, 40), (7, 40), (31, 100), (64, 64),
                (50, 333), (120, 128)]
LARGE_CASES = [("normal", 1, 4096), ("normal", 300, 4096), ("normal", 1500, 4096),
               ("hub", 700, 4096), ("rank_one", 400, 4096), ("integers", 500, 4096),
               ("signed_zeros", 200, 4096), ("two_bits", 4096, 4096)]


@pytest.mark.parametrize("kind", MATRIX_KINDS)
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_numba_equals_reference(kind, shape):
    sim = similarity_case(kind, *shape, seed=shape[0] * 7 + shape[1])
    np.testing.assert_array_equal(numba_cpu.greedy_match_numba(sim), greedy_match(sim))


@pytest.mark.parametrize("kind, rows, cols", LARGE_CASES)
def test_numba_equals_reference_at_full_token_count(kind, rows, cols):
    sim = similarity_case(kind, rows, cols, seed=rows)
    np.testing.assert_array_equal(numba_cpu.greedy_match_numba(sim), greedy_match(sim))


def test_every_row_count_up_to_the_column_count():
    sim = similarity_case("two_bits", 96, 96, seed=5)
    for rows in range(1, 97):
        np.testing.assert_array_equal(numba_cpu.greedy_match_numba(sim[:rows]),
                                      greedy_match(sim[:rows]), err_msg=f"R={rows}")


def test_zero_rows_give_an_empty_matching():
    match = numba_cpu.greedy_match_numba(np.zeros((0, 8), np.float32))
    assert match.dtype == np.int64 and match.shape == (0,)


@pytest.mark.parametrize("bad", [np.array([[np.nan, 1.0]], np.float32),
                                 np.array([[1.0, np.inf]], np.float32),
                                 np.zeros((3, 2), np.float32)])
def test_bad_matrices_raise_input_errors(bad):
    with pytest.raises(S3potInputError, match="similarity matrix"):
        numba_cpu.greedy_match_numba(bad)


def test_fused_selection_equals_reference_selection():
    z_e, z_re, face, _ = face_tokens_sample(seed=1, noise=1.0)  # noisy: many close calls
    expected = select_prompts(z_e, z_re, face, backend="reference")
    for backend in ("numba", "auto"):
        got = select_prompts(z_e, z_re, face, backend=backend)
        np.testing.assert_array_equal(got.occlusion, expected.occlusion)
        np.testing.assert_array_equal(got.face, expected.face)


def test_cache_stays_beside_the_sources_when_writable(tmp_path):
    assert numba_cpu.cache_dir_fallback(tmp_path, "") is None


def test_configured_cache_dir_wins(tmp_path):
    assert numba_cpu.cache_dir_fallback(tmp_path, "/somewhere") is None


def test_read_only_install_falls_back_to_a_user_cache(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "kernels"
    real_check = numba_cpu.write_error
    monkeypatch.setattr(numba_cpu, "write_error", lambda folder: "Read-only file system" if Path(
        folder).is_relative_to(package) else real_check(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert numba_cpu.cache_dir_fallback(package, "") == str(tmp_path / "cache" / "s3pot" / "numba")
