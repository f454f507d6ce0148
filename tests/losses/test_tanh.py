import math

import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses import tanh_loss
from sparsex.losses.tanh import similarity_tanh_loss


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


def test_similarity_tanh_loss_hand_computed_on_a_2x2_map():
    # one image, P = 2 prototypes, a 2x2 map of softmax similarities (they sum to 1 over p at each patch)
    a0 = torch.tensor([[1.0, 0.5], [0.0, 0.25]], dtype=torch.float64)
    similarities = torch.stack([a0, 1 - a0])[None]  # (1, 2, 2, 2)
    # presence over batch and patches: p0 = 1.75, p1 = 2.25
    expected = -(math.log(math.tanh(1.75)) + math.log(math.tanh(2.25))) / 2
    assert expected == pytest.approx(0.0413160, abs=1e-6)
    assert similarity_tanh_loss(similarities).item() == pytest.approx(expected, abs=1e-12)
    # PIP-Net's form on the pooled (max) scores [1, 1] is another number
    assert tanh_loss(similarities.amax(dim=(2, 3))).item() == pytest.approx(-math.log(math.tanh(1.0) + 1e-4), abs=1e-9)


def official_tanh_loss(similarity):
    """The l_t term of ClassificationModulePrune._calculate_loss in hturbe/protosvit, transcribed:
    ``similarity (b, p, n)``, rearranged to ``((b n), p)``."""
    similarity_tmp = similarity.permute(0, 2, 1).reshape(-1, similarity.shape[1])
    return -(torch.log(torch.tanh(torch.sum(similarity_tmp, dim=0)) + 1e-20).mean())


def test_similarity_tanh_loss_agrees_with_a_port_of_the_public_code():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 12, 3, 3, generator=generator) * 8  # some prototypes nearly absent
    similarities = torch.softmax(logits, dim=1)
    ported = official_tanh_loss(similarities.flatten(2))
    assert similarity_tanh_loss(similarities).item() == pytest.approx(ported.item(), abs=1e-5, rel=1e-5)


def test_similarity_tanh_loss_rejects_bad_input():
    with pytest.raises(InputError, match=r"similarities must have shape \(B, P, h, w\)"):
        similarity_tanh_loss(torch.ones(2, 3))
    with pytest.raises(InputError, match="non-negative"):
        similarity_tanh_loss(-torch.ones(1, 2, 2, 2))
