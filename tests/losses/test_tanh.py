import math

import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses import tanh_loss


def test_tanh_loss_hand_computed():
    # presence per prototype: [0 + 1, 0 + 0] = [1, 0]
    # L = -(log(tanh(1) + 1e-4) + log(0 + 1e-4)) / 2
    scores = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    expected = -(math.log(math.tanh(1.0) + 1e-4) + math.log(1e-4)) / 2
    assert expected == pytest.approx(4.7412753, abs=1e-6)
    assert tanh_loss(scores).item() == pytest.approx(expected, abs=1e-9)


def test_tanh_loss_is_flat_once_every_prototype_is_present():
    scores = torch.full((4, 3), 5.0, requires_grad=True)
    loss = tanh_loss(scores)
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(1 + 1e-4), abs=1e-6)
    assert scores.grad.abs().max().item() < 1e-12


def test_tanh_loss_rejects_bad_input():
    with pytest.raises(InputError, match="non-negative"):
        tanh_loss(torch.tensor([[-1.0, 1.0]]))
    with pytest.raises(InputError, match="shape"):
        tanh_loss(torch.ones(2, 2, 2))
    with pytest.raises(InputError, match="eps"):
        tanh_loss(torch.ones(2, 2), eps=0)
