"""SPEC stages 2 and 4 through the public API: the initial prompt and the prompt sets."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from greedy_cases import face_tokens_sample
from s3pot.core.errors import NoFaceTokensError, S3potInputError
from s3pot.core.spec import GRID_SIZE, NUM_TOKENS, PROMPT_DIM
from s3pot.kernels import PromptSelection, initial_prompt, select_prompts
from s3pot.kernels.reference import cosine_per_token, similarity_for_selection, split_matches

CPU_BACKENDS = ("reference", "numba")


def _features(seed=0, channels=8):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((channels, GRID_SIZE, GRID_SIZE)).astype(np.float32)
    z_r = rng.standard_normal((channels, GRID_SIZE, GRID_SIZE)).astype(np.float32)
    return z, z_r


def _raster(y, x):
    return y * GRID_SIZE + x


# -- initial prompt (stage 2) -----------------------------------------------------------------

def test_initial_prompt_is_the_face_token_where_features_agree_best():
    z, z_r = _features()
    z_r[:, 40, 9] = 3 * z[:, 40, 9]  # cosine exactly 1 up to rounding
    face = np.ones((GRID_SIZE, GRID_SIZE), bool)
    assert initial_prompt(z, z_r, face) == _raster(40, 9)


def test_initial_prompt_ignores_non_face_tokens():
    z, z_r = _features()
    z_r[:, 40, 9] = z[:, 40, 9]
    z_r[:, 5, 5] = z[:, 5, 5]
    face = np.zeros((GRID_SIZE, GRID_SIZE), bool)
    face[30:, :] = True  # (5, 5) is not face
    assert initial_prompt(z, z_r, face) == _raster(40, 9)


def test_initial_prompt_tie_goes_to_the_lowest_index():
    z, z_r = _features(channels=4)
    vector = np.array([1.0, 2.0, -1.0, 0.5], np.float32)
    for y, x in ((50, 3), (12, 60), (12, 61)):  # identical pairs: identical cosines
        z[:, y, x] = vector
        z_r[:, y, x] = vector
    face = np.ones((GRID_SIZE, GRID_SIZE), bool)
    assert initial_prompt(z, z_r, face) == _raster(12, 60)


def test_cosine_matches_torch_including_zero_vectors():
    torch = pytest.importorskip("torch")
    z, z_r = _features(seed=1)
    z[:, 0, 0] = 0.0  # zero vector: eps keeps the cosine at 0 instead of NaN
    z_r[:, 0, 1] = 0.0
    expected = torch.nn.functional.cosine_similarity(
        torch.from_numpy(z).double().reshape(z.shape[0], -1),
        torch.from_numpy(z_r).double().reshape(z.shape[0], -1), dim=0, eps=1e-8).numpy()
    got = cosine_per_token(z, z_r)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got[0] == 0.0 and got[1] == 0.0


def test_initial_prompt_without_face_tokens_is_a_clear_error():
    z, z_r = _features()
    with pytest.raises(NoFaceTokensError, match="no token is a face token"):
        initial_prompt(z, z_r, np.zeros((GRID_SIZE, GRID_SIZE), bool))


@pytest.mark.parametrize("z_shape, z_r_shape, expected", [
    ((8, 32, 32), (8, 32, 32), "C x 64 x 64"),
    ((8, 64, 64), (4, 64, 64), "image features' shape"),
])
def test_initial_prompt_rejects_wrong_shapes(z_shape, z_r_shape, expected):
    with pytest.raises(S3potInputError, match=expected):
        initial_prompt(np.zeros(z_shape, np.float32), np.zeros(z_r_shape, np.float32),
                       np.ones((GRID_SIZE, GRID_SIZE), bool))


def test_initial_prompt_rejects_nan():
    z, z_r = _features()
    z[3, 1, 1] = np.nan
    with pytest.raises(S3potInputError, match="finite"):
        initial_prompt(z, z_r, np.ones((GRID_SIZE, GRID_SIZE), bool))


# -- prompt selection (stage 4) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def occluded_face():
    return face_tokens_sample(seed=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_prompt_sets_partition_the_face_tokens(occluded_face, backend):
    z_e, z_re, face, _ = occluded_face
    selection = select_prompts(z_e, z_re, face, backend=backend)
    assert isinstance(selection, PromptSelection)
    occlusion, face_prompts = selection
    for prompts in selection:
        assert prompts.dtype == np.int64
        assert np.all(np.diff(prompts) > 0)  # ascending raster order, no repeats
    assert np.intersect1d(occlusion, face_prompts).size == 0
    np.testing.assert_array_equal(np.union1d(occlusion, face_prompts), np.flatnonzero(face))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_occlusion_prompts_fall_on_the_occluder(occluded_face, backend):
    z_e, z_re, face, occluded = occluded_face
    occlusion, face_prompts = select_prompts(z_e, z_re, face, backend=backend)
    visible = np.flatnonzero(face & ~occluded)
    assert np.isin(visible, face_prompts).all()  # each visible token is its own best partner
    assert np.isin(occlusion, np.flatnonzero(occluded)).all()
    assert occlusion.size >= 0.5 * occluded.sum()


def test_selection_is_the_split_of_the_reference_matching(occluded_face):
    from s3pot.kernels import greedy_match

    z_e, z_re, face, _ = occluded_face
    flat = face.reshape(NUM_TOKENS)
    sim = similarity_for_selection(z_e, z_re, flat)
    assert sim.shape == (flat.sum(), NUM_TOKENS) and sim.dtype == np.float32
    expected = split_matches(greedy_match(sim), flat)
    got = select_prompts(z_e, z_re, face, backend="reference")
    np.testing.assert_array_equal(got.occlusion, expected.occlusion)
    np.testing.assert_array_equal(got.face, expected.face)


def test_one_face_token(occluded_face):
    z_e, z_re, _, _ = occluded_face
    face = np.zeros((GRID_SIZE, GRID_SIZE), bool)
    face[20, 20] = True
    selection = select_prompts(z_e, z_re, face)
    assert selection.face.tolist() == [_raster(20, 20)] and selection.occlusion.size == 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_face_mask_is_a_clear_error(occluded_face, backend):
    z_e, z_re, _, _ = occluded_face
    with pytest.raises(NoFaceTokensError, match="face mask: no token is a face token"):
        select_prompts(z_e, z_re, np.zeros((GRID_SIZE, GRID_SIZE), bool), backend=backend)


def test_integer_face_masks_of_zeros_and_ones_are_accepted(occluded_face):
    z_e, z_re, face, _ = occluded_face
    a = select_prompts(z_e, z_re, face.astype(np.uint8))
    b = select_prompts(z_e, z_re, face)
    np.testing.assert_array_equal(a.occlusion, b.occlusion)


@pytest.mark.parametrize("mutate, expected", [
    (lambda z_e, z_re, m: (z_e[:100], z_re, m), "z_e \\(image tokens\\): expected float tokens"),
    (lambda z_e, z_re, m: (z_e, z_re.T, m), "z_re \\(reference tokens\\): expected float tokens"),
    (lambda z_e, z_re, m: (z_e, z_re, m[:32]), "face mask: expected a 64 x 64"),
    (lambda z_e, z_re, m: (z_e, z_re, m * 2), "face mask: expected bool"),
])
def test_bad_inputs_raise_input_errors(occluded_face, mutate, expected):
    z_e, z_re, face, _ = occluded_face
    with pytest.raises(S3potInputError, match=expected):
        select_prompts(*mutate(z_e, z_re, face.astype(np.int64)))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_finite_tokens_are_rejected(occluded_face, backend):
    z_e, z_re, face, _ = occluded_face
    z_e = z_e.copy()
    z_e[7, 3] = np.inf
    with pytest.raises(S3potInputError, match=r"z_e \(image tokens\): expected finite.*first \[7\]"):
        select_prompts(z_e, z_re, face, backend=backend)


def test_unknown_backend_lists_the_valid_ones(occluded_face):
    z_e, z_re, face, _ = occluded_face
    with pytest.raises(S3potInputError, match="expected one of .*'numba'.*got 'tensorrt'"):
        select_prompts(z_e, z_re, face, backend="tensorrt")


def test_cuda_backend_without_a_gpu_is_a_clear_error(occluded_face):
    numba_cuda = pytest.importorskip("numba.cuda")
    if numba_cuda.is_available():
        pytest.skip("a CUDA device (or the simulator) is available")
    from s3pot.core.errors import MissingDependencyError

    z_e, z_re, face, _ = occluded_face
    with pytest.raises(MissingDependencyError, match="backend='numba'"):
        select_prompts(z_e, z_re, face, backend="cuda")


def test_importing_kernels_does_not_import_numba():
    code = ("import sys, s3pot.kernels as k; k.select_prompts; "
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_token_shape_constants_are_the_spec_ones():
    assert (NUM_TOKENS, PROMPT_DIM, GRID_SIZE) == (4096, 256, 64)
