"""The paper's three objectives against numbers worked out by hand (SPEC.md, "Training objective")."""
from __future__ import annotations

import math

import pytest
import torch

from s3pot.core.errors import S3potInputError
from s3pot.models.losses import PROB_EPS, objective, prompt_loss, prompt_probabilities

# q at two occlusion prompts and three face prompts, and each term worked out by hand:
#   L_occ  = -(ln 0.9 + ln 0.6) / 2 = -(-0.1053605 - 0.5108256) / 2 = 0.3080931
#   L_face = (ln 0.2 + ln 0.7 + ln 0.1) / 3 = (-1.6094379 - 0.3566749 - 2.3025851) / 3 = -1.4228993
#   L_pen  = (sigmoid(10 (0.2 - 0.5)) + sigmoid(10 (0.7 - 0.5)) + sigmoid(10 (0.1 - 0.5))) / 3
#          = (sigmoid(-3) + sigmoid(2) + sigmoid(-4)) / 3 = (0.0474259 + 0.8807971 + 0.0179862) / 3
#          = 0.3154031
#   L      = L_face + L_occ + 0.5 L_pen = -1.4228993 + 0.3080931 + 0.1577015 = -0.9571047
Q_OCC = [0.9, 0.6]
Q_FACE = [0.2, 0.7, 0.1]
HAND = {"occ": 0.3080931, "face": -1.4228993, "pen": 0.3154031, "total": -0.9571047}


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_each_term_and_the_total_match_the_hand_computation():
    terms = objective(_t(Q_OCC), _t(Q_FACE)).as_floats()
    for name, value in HAND.items():
        assert terms[name] == pytest.approx(value, abs=1e-7), name


def test_alpha_and_lambda_are_the_papers_and_can_be_changed():
    terms = objective(_t(Q_OCC), _t(Q_FACE), alpha=2.0, lam=1.0).as_floats()
    pen = sum(1 / (1 + math.exp(-2.0 * (q - 0.5))) for q in Q_FACE) / 3  # 0.4668...
    assert terms["pen"] == pytest.approx(pen, abs=1e-12)
    assert terms["total"] == pytest.approx(HAND["face"] + HAND["occ"] + pen, abs=1e-7)


@pytest.mark.parametrize("occ, face, expected", [
    ([], Q_FACE, {"occ": 0.0, "face": HAND["face"], "pen": HAND["pen"],
                  "total": HAND["face"] + 0.5 * HAND["pen"]}),
    (Q_OCC, [], {"occ": HAND["occ"], "face": 0.0, "pen": 0.0, "total": HAND["occ"]}),
    ([], [], {"occ": 0.0, "face": 0.0, "pen": 0.0, "total": 0.0}),
], ids=["no-occlusion-prompts", "no-face-prompts", "no-prompts"])
def test_an_empty_prompt_set_contributes_zero(occ, face, expected):
    terms = objective(_t(occ), _t(face)).as_floats()
    for name, value in expected.items():
        assert terms[name] == pytest.approx(value, abs=1e-7), name


def test_probabilities_are_read_from_the_bilinear_upsampling_at_the_prompt_pixel():
    # Low-res logits equal to their column index: the 1024 map at pixel x holds the source column
    # (x + 0.5) / 4 - 0.5 (half-pixel bilinear), so at x = 8 (a token centre): 1.625.
    logits = torch.arange(256, dtype=torch.float32).repeat(256, 1)[None, None]  # 1 x 1 x 256 x 256
    q = prompt_probabilities(logits, torch.tensor([[8.0, 24.0], [1016.0, 8.0]]))
    assert q[0].item() == pytest.approx(1 / (1 + math.exp(-1.625)), abs=1e-6)  # 0.8354835
    assert q[1].item() == pytest.approx(1 - PROB_EPS, abs=1e-7)  # 253.625: clamped (float32)


def test_labels_split_the_prompts_and_gradients_reach_the_logits():
    logits = torch.zeros(1, 1, 256, 256, requires_grad=True)
    points = torch.tensor([[8.0, 8.0], [24.0, 8.0], [40.0, 8.0]])
    terms = prompt_loss(logits, points, torch.tensor([1.0, 0.0, 0.0]))
    # q = 0.5 everywhere: L_occ = ln 2, L_face = -ln 2, L_pen = sigmoid(0) = 0.5
    assert terms.as_floats() == pytest.approx(
        {"occ": math.log(2), "face": -math.log(2), "pen": 0.5, "total": 0.25}, abs=1e-6)
    terms.total.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_label_1_is_an_occlusion_prompt_and_label_0_a_face_prompt():
    # Logits rising along x: q differs per prompt, so swapping the roles would change every term.
    logits = (torch.arange(256, dtype=torch.float64) / 64 - 2).repeat(256, 1)[None, None]
    points = torch.tensor([[8.0, 8.0], [520.0, 8.0], [1016.0, 8.0]])  # source columns 1.625, 129.625, 253.625
    q = [1 / (1 + math.exp(-(c / 64 - 2))) for c in (1.625, 129.625, 253.625)]  # 0.1219, 0.5063, 0.8813
    terms = prompt_loss(logits, points, torch.tensor([1.0, 0.0, 1.0])).as_floats()
    assert terms["occ"] == pytest.approx(-(math.log(q[0]) + math.log(q[2])) / 2, abs=1e-9)
    assert terms["face"] == pytest.approx(math.log(q[1]), abs=1e-9)
    assert terms["pen"] == pytest.approx(1 / (1 + math.exp(-10 * (q[1] - 0.5))), abs=1e-9)


def test_bad_labels_and_points_are_refused():
    logits = torch.zeros(1, 1, 256, 256)
    with pytest.raises(S3potInputError, match=r"prompt labels: expected 1 \(occlusion\) or 0"):
        prompt_loss(logits, torch.zeros(1, 2), torch.tensor([-1.0]))
    with pytest.raises(S3potInputError, match="expected pixels in 0..1023, got 0..1024"):
        prompt_probabilities(logits, torch.tensor([[0.0, 1024.0]]))
    with pytest.raises(S3potInputError, match=r"decoder logits: expected 256 x 256, got \(1, 1, 64, 64\)"):
        prompt_probabilities(torch.zeros(1, 1, 64, 64), torch.zeros(1, 2))
