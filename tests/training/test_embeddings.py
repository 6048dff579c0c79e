"""The embedding cache: the encoder runs once per image, and another image, variant or set of
weights never hits an entry it did not make."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from helpers import astronaut_sample
from s3pot.models import build_s3pot
from s3pot.runtime.preprocess import prepare_inputs
from s3pot.training.embeddings import EmbeddingCache, encoder_fingerprint

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    """The astronaut sample's image and reference, normalised: 2 x 3 x 1024 x 1024."""
    return prepare_inputs(*astronaut_sample()).pixels


def _counting(model) -> list[int]:
    """Images the model's encoder has run on, one entry per call."""
    calls: list[int] = []
    model.image_encoder.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    return calls


def test_each_image_is_encoded_once_and_then_read_back_exactly(tmp_path, pixels):
    model = build_s3pot("tiny", random_weights=True, seed=0)
    with torch.inference_mode():
        direct = model.encode(torch.from_numpy(pixels)).numpy()
    calls = _counting(model)
    cache = EmbeddingCache(tmp_path, model, "tiny", CPU)
    first = cache.fetch(list(pixels))
    assert sum(calls) == 2 and cache.stats.encoded == 2 and cache.stats.hits == 0
    np.testing.assert_allclose(np.stack(first), direct, rtol=0, atol=1e-6)  # batch 1 vs batch 2
    again = EmbeddingCache(tmp_path, model, "tiny", CPU)  # a new run over the same folder
    for _ in range(3):  # three epochs
        for got, want in zip(again.fetch(list(pixels)), first):
            np.testing.assert_array_equal(got, want)
    assert sum(calls) == 2 and again.stats.encoded == 0 and again.stats.hits == 6


def test_a_changed_image_misses(tmp_path, pixels):
    model = build_s3pot("tiny", random_weights=True, seed=0)
    cache = EmbeddingCache(tmp_path, model, "tiny", CPU)
    cache.fetch([pixels[0]])
    changed = pixels[0].copy()
    changed[0, 500, 500] += 0.01  # one pixel
    assert cache.key(changed) != cache.key(pixels[0])
    cache.fetch([changed])
    assert cache.stats.encoded == 2 and cache.stats.hits == 0


def test_another_variant_or_other_weights_miss(tmp_path, pixels):
    tiny = build_s3pot("tiny", random_weights=True, seed=0)
    keys = {EmbeddingCache(tmp_path, tiny, "tiny", CPU).key(pixels[0])}
    for model, variant in ((build_s3pot("tiny", random_weights=True, seed=1), "tiny"),
                           (build_s3pot("tiny_mobile", random_weights=True, seed=0), "tiny_mobile"),
                           (tiny, "renamed")):
        keys.add(EmbeddingCache(tmp_path, model, variant, CPU).key(pixels[0]))
    assert len(keys) == 4
    # The fingerprint reads the encoder only: an adapter on top (SA weights) keeps the entries.
    trained = build_s3pot("tiny", random_weights=True, seed=0)
    with torch.no_grad():
        trained.sa.norm.weight.add_(1.0)
    assert encoder_fingerprint(trained, "tiny") == encoder_fingerprint(tiny, "tiny")


def test_a_corrupt_entry_is_recomputed_with_a_warning(tmp_path, pixels, caplog):
    model = build_s3pot("tiny", random_weights=True, seed=0)
    cache = EmbeddingCache(tmp_path, model, "tiny", CPU)
    good = cache.fetch([pixels[0]])[0]
    path = cache.path(cache.key(pixels[0]))
    path.write_bytes(b"\x93NUMPY not really")
    with caplog.at_level(logging.WARNING):
        again = cache.fetch([pixels[0]])[0]
    np.testing.assert_array_equal(again, good)
    assert "unreadable" in caplog.text and cache.stats.recomputed == 1 and cache.stats.encoded == 2
    np.save(path, np.zeros((3, 3), np.float32))  # readable, wrong shape
    cache.fetch([pixels[0]])
    assert cache.stats.recomputed == 2
    assert np.load(path, allow_pickle=False).shape == (256, 64, 64)


def test_without_a_folder_nothing_is_kept(pixels):
    model = build_s3pot("tiny", random_weights=True, seed=0)
    cache = EmbeddingCache(None, model, "tiny", CPU)
    cache.fetch([pixels[0], pixels[0]])  # one image twice in one call: encoded once
    cache.fetch([pixels[0]])
    assert cache.stats.encoded == 2
