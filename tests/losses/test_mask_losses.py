import math

import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses.mask import activation_matching_loss, binarisation_loss, deletion_loss, mask_area_loss, total_variation_loss


def test_mask_area_hand_computed():
    mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])  # mean = 2 / 4
    assert mask_area_loss(mask).item() == pytest.approx(0.5)
    # per-image areas 0.5 and 0.125 against target 0.25: relu(0.25), relu(-0.125) -> mean 0.125
    two = torch.cat([mask, torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]])])
    assert mask_area_loss(two, target=0.25).item() == pytest.approx(0.125)


def test_total_variation_hand_computed():
    # rows [1, 0], [0, 0]: vertical |0-1|, |0-0| -> mean 0.5; horizontal |0-1|, |0-0| -> mean 0.5
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert total_variation_loss(mask).item() == pytest.approx(1.0)
    assert total_variation_loss(torch.ones(2, 1, 3, 3)).item() == 0.0


def test_binarisation_hand_computed():
    mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])  # 0, 0, 0.25, 0.25 -> mean 0.125
    assert binarisation_loss(mask).item() == pytest.approx(0.125)


def test_activation_matching_hand_computed():
    # one image, two channels, one location: a = [0, 0] -> p = [1/2, 1/2]; b = [log 3, 0] -> q = [3/4, 1/4]
    # KL(p || q) = 1/2 log(2/3) + 1/2 log(2); cosine(a, b) with a = 0 is 0 (eps) -> 1 - 0
    a = torch.zeros(1, 2, 1, 1)
    b = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1, 1)
    kl = 0.5 * math.log(2 / 3) + 0.5 * math.log(2)
    assert activation_matching_loss(a, b, 1.0, 0.0).item() == pytest.approx(kl, abs=1e-6)
    assert activation_matching_loss(a, b, 0.0, 1.0).item() == pytest.approx(1.0, abs=1e-6)
    # cosine term: a = [1, 0], b = [1, 1] -> cos = 1 / sqrt(2)
    a2, b2 = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1), torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
    assert activation_matching_loss(a2, b2, 0.0, 1.0).item() == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)


def test_activation_matching_is_zero_for_equal_activations_and_only_moves_the_explained_side():
    a = torch.randn(3, 4, 2, 2, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    loss = activation_matching_loss(a, b)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    (activation_matching_loss(a, b + 1.0)).backward()
    assert a.grad is None  # the reference is a constant target


def test_deletion_loss_hand_computed():
    # image 0: logits [0, ln 3] -> softmax [1/4, 3/4], label 1 -> 3/4; image 1: [0, 0], label 0 -> 1/2
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    assert deletion_loss(logits, torch.tensor([1, 0])).item() == pytest.approx((0.75 + 0.5) / 2)
    with pytest.raises(InputError, match="class-index targets must have an integer dtype"):
        deletion_loss(logits, torch.tensor([1.0, 0.0]))
    with pytest.raises(InputError, match=r"targets must be class indices of shape \(2,\)"):
        deletion_loss(logits, torch.tensor([1]))
    with pytest.raises(InputError, match="target index 2 is out of range for 2 classes"):
        deletion_loss(logits, torch.tensor([2, 0]))


def test_mask_losses_reject_bad_input():
    with pytest.raises(InputError, match="equal shapes"):
        activation_matching_loss(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))
    with pytest.raises(InputError, match=r"mask must have shape \(B, 1, H, W\)"):
        mask_area_loss(torch.zeros(4, 4))
    with pytest.raises(InputError, match="NaN"):
        total_variation_loss(torch.full((1, 1, 2, 2), float("nan")))
