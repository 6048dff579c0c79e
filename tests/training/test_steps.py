"""What both training modes share: only SA trains, and FE could not (the objectives give it no
gradient); a sample's prompts are the runtime's."""
from __future__ import annotations

import numpy as np
import torch

from helpers import astronaut_sample
from s3pot.models import build_s3pot
from s3pot.runtime.backends.torch.runner import TorchRunner
from s3pot.runtime.pipeline import Pipeline
from s3pot.runtime.preprocess import prepare_inputs
from s3pot.training.steps import make_trainable, sample_loss, sample_prompts, torch_runner

CPU = torch.device("cpu")


def _sample(model):
    prepared = prepare_inputs(*astronaut_sample())
    runner = torch_runner(model, CPU, "tiny", "sam")
    embeddings = runner.encode(prepared.pixels)  # 2 x 256 x 64 x 64
    return prepared, runner, embeddings


def test_only_the_sa_layer_trains():
    model = build_s3pot("tiny", random_weights=True, seed=0)
    params = make_trainable(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"sa.{name}" for name, _ in model.sa.named_parameters()}
    assert len(params) == len(trainable) and not model.training


def test_fe_gets_no_gradient_from_the_objectives():
    """FE's output reaches the loss only through the greedy matching (a discrete choice), so
    even with every parameter trainable, FE's gradients stay empty while SA's and the decoder's
    do not: this is why training leaves FE frozen."""
    model = build_s3pot("tiny", random_weights=True, seed=0)
    prepared, runner, embeddings = _sample(model)
    model.requires_grad_(True)
    prompts = sample_prompts(runner, embeddings, prepared.face_mask)
    terms, _ = sample_loss(model, torch.from_numpy(embeddings[0]), prompts)
    terms.total.backward()
    assert all(p.grad is None for p in model.fe.parameters())
    assert all(p.grad is not None for p in model.sa.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mask_decoder.parameters())


def test_prompts_and_logits_are_the_runtimes():
    model = build_s3pot("tiny", random_weights=True, seed=0)
    make_trainable(model)
    prepared, runner, embeddings = _sample(model)
    prompts = sample_prompts(runner, embeddings, prepared.face_mask)
    _, logits = sample_loss(model, torch.from_numpy(embeddings[0]), prompts)
    segmentation = Pipeline(TorchRunner(model, device="cpu")).run(prepared)
    assert prompts.initial_token == segmentation.initial_token
    np.testing.assert_array_equal(prompts.occlusion_tokens, segmentation.occlusion_tokens)
    np.testing.assert_array_equal(prompts.face_tokens, segmentation.face_tokens)
    np.testing.assert_allclose(logits.detach().numpy().reshape(256, 256),
                               segmentation.low_res_logits, rtol=0, atol=1e-5)
