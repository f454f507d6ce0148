import math

import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses import class_importance_hoyer_loss, hoyer_square, hoyer_square_loss


def test_hoyer_square_hand_computed_rows():
    # [3, 0, 0]: 9 / 9 = 1; [1, 1, 0]: 4 / 2 = 2; [1, -2, 2]: 25 / 9; [0, 0, 0]: 0
    x = torch.tensor([[3.0, 0, 0], [1, 1, 0], [1, -2, 2], [0, 0, 0]], dtype=torch.float64)
    assert hoyer_square(x).tolist() == pytest.approx([1.0, 2.0, 25 / 9, 0.0])
    assert hoyer_square_loss(x).item() == pytest.approx((1 + 2 + 25 / 9 + 0) / 4)


def test_hoyer_square_counts_equal_entries_and_is_scale_invariant():
    x = torch.zeros(1, 10)
    x[0, :4] = 0.3
    assert hoyer_square(x).item() == pytest.approx(4.0, rel=1e-5)
    assert hoyer_square(7 * x).item() == pytest.approx(4.0, rel=1e-5)


def test_hoyer_square_gradient_favours_the_larger_entry():
    x = torch.tensor([[2.0, 1.0]], requires_grad=True)
    hoyer_square_loss(x).backward()
    # d/dx_i (S1^2 / S2) = 2 S1 / S2 - 2 x_i S1^2 / S2^2 with S1 = 3, S2 = 5: [1.2 - 1.44, 1.2 - 0.72]
    assert x.grad.tolist()[0] == pytest.approx([-0.24, 0.48])


def test_hoyer_square_rejects_bad_input():
    with pytest.raises(InputError, match="shape"):
        hoyer_square(torch.ones(3))
    with pytest.raises(InputError, match="NaN"):
        hoyer_square(torch.tensor([[float("nan"), 1.0]]))


def test_class_importance_hoyer_loss_hand_computed():
    # scores [[1, 2, 0], [3, 0, 1]], W = [[1, 0, 1], [0, 1, 1]], targets [1, 0]
    # image 0, class 1: importances [0, 2, 0] -> HS = 4 / 4 = 1
    # image 1, class 0: importances [3, 0, 1] -> HS = 16 / 10 = 1.6; mean 1.3
    scores = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    weights = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    loss = class_importance_hoyer_loss(scores, weights, torch.tensor([1, 0]))
    assert loss.item() == pytest.approx(1.3, rel=1e-6)


# Two images, P = 2 prototypes, K = 2 classes: scores s = [[1, 2], [0, 1]], W = [[1, 0], [0.5, 1]], y = [1, 0].
TWO_SCORES = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
TWO_WEIGHTS = torch.tensor([[1.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
TWO_TARGETS = torch.tensor([1, 0])


def test_sparsex_form_hand_computed_on_two_prototypes_two_classes():
    # image 0, true class 1: I = [0.5, 2] -> HS = 2.5^2 / 4.25 = 25/17; image 1, class 0: I = [0, 0] -> HS = 0
    loss = class_importance_hoyer_loss(TWO_SCORES, TWO_WEIGHTS, TWO_TARGETS, hoyer_weight=0.01)
    assert loss.item() == pytest.approx(0.01 * (25 / 17 + 0) / 2, rel=1e-9)


def test_official_form_hand_computed_on_two_prototypes_two_classes():
    # all classes, n = P K = 4 entries. image 0: I = [1, 0, 0.5, 2] (class 0 then class 1):
    #   |I|_1 = 3.5, |I|_2^2 = 5.25 -> HS = 12.25 / 5.25 = 7/3, / sqrt(4) = 7/6, |I|_2 = sqrt(5.25)
    # image 1: I = [0, 0, 0, 1] -> HS = 1, / 2 = 0.5, |I|_2 = 1
    expected = (0.01 * 7 / 6 + 0.01 * math.sqrt(5.25) + 0.01 * 0.5 + 0.01 * 1.0) / 2
    assert expected == pytest.approx(0.02478977, abs=1e-8)
    loss = class_importance_hoyer_loss(TWO_SCORES, TWO_WEIGHTS, scope="all", normalise=True, hoyer_weight=0.01,
                                       l2_weight=0.01)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    # the targets do not matter for scope "all"
    assert class_importance_hoyer_loss(TWO_SCORES, TWO_WEIGHTS, TWO_TARGETS.flip(0), scope="all", normalise=True,
                                       hoyer_weight=0.01, l2_weight=0.01).item() == pytest.approx(expected, rel=1e-9)


def official_weighted_hs_loss(weight, similarity_score, alpha=0.01, gamma=0.01, eps=1e-20):
    """WeightedHsLoss(structured=False, compute_importance=True).forward, transcribed from
    hturbe/protosvit src/learning/models/utils/loss.py (weight_loss 1)."""
    importance = torch.einsum("bp,cp->bpc", similarity_score, weight)
    sparsity_loss = alpha * (torch.norm(importance, p=1, dim=[1, 2]) ** 2 / torch.sum(importance**2 + eps, dim=[1, 2]))
    sparsity_loss = sparsity_loss / torch.numel(importance[0]) ** 0.5
    sparsity_loss += gamma * torch.norm(importance, dim=[1, 2], p=2)
    return sparsity_loss.mean()


def test_official_form_agrees_with_a_port_of_the_public_code():
    generator = torch.Generator().manual_seed(3)
    scores = torch.rand(16, 30, generator=generator)
    weights = torch.rand(7, 30, generator=generator) * (torch.rand(7, 30, generator=generator) > 0.6)  # sparse, >= 0
    ported = official_weighted_hs_loss(weights, scores)
    ours = class_importance_hoyer_loss(scores, weights, scope="all", normalise=True, hoyer_weight=0.01, l2_weight=0.01)
    assert ours.item() == pytest.approx(ported.item(), abs=1e-5, rel=1e-5)
    sparsex_form = class_importance_hoyer_loss(scores, weights, torch.zeros(16, dtype=torch.long), hoyer_weight=0.01)
    assert abs(sparsex_form.item() - ported.item()) > 1e-3  # the two forms really differ


def test_class_importance_hoyer_loss_rejects_bad_options():
    with pytest.raises(InputError, match="unknown Hoyer-Square scope 'some'"):
        class_importance_hoyer_loss(TWO_SCORES, TWO_WEIGHTS, TWO_TARGETS, scope="some")
    with pytest.raises(InputError, match="l2_weight must be a finite number >= 0"):
        class_importance_hoyer_loss(TWO_SCORES, TWO_WEIGHTS, scope="all", l2_weight=-1.0)
    with pytest.raises(InputError, match="targets"):
        class_importance_hoyer_loss(TWO_SCORES, TWO_WEIGHTS)  # scope "true" needs the class indices
