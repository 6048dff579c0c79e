"""The pipeline's invariants on the tiny variant (random weights, real 1024 input, 64 x 64 grid)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import rel_l2
from helpers import astronaut_sample
from s3pot.core.spec import face_token_mask
from s3pot.core.errors import NoFaceTokensError, S3potInputError
from s3pot.core.spec import prompt_points
from s3pot.runtime.backends import ModelSpec
from s3pot.runtime.backends.torch import TorchRunner, create_runner
from s3pot.runtime.pipeline import Pipeline
from s3pot.runtime.preprocess import prepare_inputs


@pytest.fixture(scope="module")
def pipeline(tiny_model):
    return Pipeline(TorchRunner(tiny_model, device="cpu"))


@pytest.fixture(scope="module")
def sample():
    return astronaut_sample()


@pytest.fixture(scope="module")
def result(pipeline, sample):
    return pipeline.segment(*sample)


def test_prompts_partition_the_face_tokens(result, sample):
    _, _, parsing = sample
    prepared = prepare_inputs(*sample)
    face = np.flatnonzero(prepared.face_mask)
    occ, fac = result.occlusion_tokens, result.face_tokens
    assert np.intersect1d(occ, fac).size == 0
    assert np.array_equal(np.union1d(occ, fac), face)
    assert np.all(np.diff(occ) > 0) and np.all(np.diff(fac) > 0)  # raster order
    assert face[0] <= result.initial_token <= face[-1] and result.initial_token in face


def test_outputs_at_input_size(result, sample):
    image = sample[0]
    assert result.occlusion.shape == result.visible_face.shape == result.logits.shape == image.shape[:2]
    assert result.occlusion.dtype == bool
    assert np.array_equal(result.occlusion, result.logits > 0)
    assert not np.any(result.visible_face & result.occlusion)
    assert result.low_res_logits.shape == (256, 256)
    assert set(result.timings) >= {"encoder", "fe", "prompt_selection", "sa", "decoder"}


def test_pipeline_equals_the_model_forward(tiny_model, result, sample):
    """The stage-by-stage pipeline and S3POT.forward are one function."""
    prepared = prepare_inputs(*sample)
    with torch.no_grad():
        out = tiny_model(torch.from_numpy(prepared.pixels), prepared.face_mask)
    assert out.initial_token == result.initial_token
    assert np.array_equal(out.occlusion_tokens, result.occlusion_tokens)
    assert np.array_equal(out.face_tokens, result.face_tokens)
    assert rel_l2(out.low_res_logits.numpy()[0, 0], result.low_res_logits) < 1e-6


def test_mask_does_not_depend_on_prompt_order(tiny_model, result):
    points, labels = prompt_points(result.occlusion_tokens, result.face_tokens)
    order = np.random.default_rng(0).permutation(len(labels))
    z = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        def logits(p, l):
            prompts = tiny_model.reweight(torch.from_numpy(p)[None], torch.from_numpy(l)[None])
            return tiny_model.decode(z, prompts).numpy()
        base = logits(points, labels)
        shuffled = logits(points[order], labels[order])
    assert rel_l2(shuffled, base) < 1e-5
    assert np.mean((shuffled > 0) == (base > 0)) > 0.999


def test_unit_normalization_changes_the_encoder_input(pipeline, sample):
    sam = prepare_inputs(*sample, normalization="sam").pixels
    unit = prepare_inputs(*sample, normalization="unit").pixels
    assert unit.min() >= 0 and unit.max() <= 1 and sam.min() < -1


def test_face_set_selects_face_tokens(sample):
    _, _, parsing = sample
    with_glasses = parsing.copy()
    with_glasses[parsing == 3] = 10  # eyes become eye-glass
    paper = prepare_inputs(*sample[:2], with_glasses, face_set="paper").face_mask
    authors = prepare_inputs(*sample[:2], with_glasses, face_set="authors").face_mask
    assert authors.sum() > paper.sum()
    assert np.array_equal(authors, authors | paper)


def test_no_face_label_is_a_clear_error(pipeline, sample):
    image, reference, parsing = sample
    with pytest.raises(NoFaceTokensError, match="face"):
        pipeline.segment(image, reference, np.where(np.isin(parsing, (1, 2, 3, 5, 6, 9)), 4, parsing))


def test_parsing_of_wrong_shape_is_a_clear_error(pipeline, sample):
    image, reference, parsing = sample
    with pytest.raises(S3potInputError, match=r"expected the size of reference"):
        pipeline.segment(image, reference, parsing[:400])


def test_real_faces_segment(pipeline, faces_dir):
    from helpers import ellipse_parsing
    from s3pot.runtime.io import load_image

    for name in ("obama.jpg", "biden.jpg", "obama_small.jpg", "32bit.png"):
        image = load_image(faces_dir / name)
        h, w = image.shape[:2]
        parsing = ellipse_parsing((h, w), centre=(w // 2, h // 3), axes=(w // 5, h // 6))
        seg = pipeline.segment(image, image, parsing)
        assert seg.occlusion.shape == (h, w)
        assert len(seg.occlusion_tokens) + len(seg.face_tokens) == int(
            face_token_mask(_resize_nearest(parsing)).sum())


def _resize_nearest(labels):
    from s3pot.runtime.preprocess import resize_parsing
    return resize_parsing(labels)


def test_mobile_sam_variant_runs_the_pipeline(sample):
    """The TinyViT (MobileSAM) encoder behind the same pipeline."""
    from s3pot.models import build_s3pot

    pipeline = Pipeline(TorchRunner(build_s3pot("tiny_mobile", random_weights=True), device="cpu"))
    seg = pipeline.segment(*sample)
    prepared = prepare_inputs(*sample)
    assert seg.occlusion.shape == sample[0].shape[:2]
    assert np.array_equal(np.union1d(seg.occlusion_tokens, seg.face_tokens),
                          np.flatnonzero(prepared.face_mask))


def test_pipeline_runs_an_adapter_as_trained(tmp_path, sample):
    """The Python API, like the CLI, takes normalisation and face set from the adapter."""
    from s3pot.models import build_s3pot, save_adapter

    path = save_adapter(tmp_path / "a.pt", build_s3pot("tiny", random_weights=True),
                        variant="tiny", normalization="unit", face_set="authors")
    backend = create_runner(ModelSpec(variant="tiny", random_weights=True, adapter=path, device="cpu"))
    pipeline = Pipeline(backend)
    assert pipeline.normalization == "unit" and pipeline.face_set == (1, 2, 3, 5, 6, 9, 10)
    with pytest.raises(S3potInputError, match="was trained with 'unit'"):
        Pipeline(backend, normalization="sam")
    with pytest.raises(S3potInputError, match="was trained with face set"):
        Pipeline(backend, face_set="paper")
    assert Pipeline(TorchRunner(build_s3pot("tiny", random_weights=True), device="cpu")).normalization == "sam"
