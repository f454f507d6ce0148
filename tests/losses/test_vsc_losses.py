import math

import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses import (
    bernoulli_jsd,
    class_alignment_loss,
    mean_pairwise_jsd,
    pairwise_bernoulli_jsd,
    spike_slab_kl,
)


def _h(p):  # Bernoulli entropy in nats, by hand
    return -sum(x * math.log(x) for x in (p, 1 - p) if x > 0)


def test_spike_slab_kl_hand_computed():
    # row 0: the posterior equals the prior (gamma = alpha, N(0, 1)): KL 0.
    # row 1: gamma 1, mu 1, sigma^2 1, alpha 0.5: slab -1/2 (1 + 0 - 1 - 1) = 1/2, spike log(1 / 0.5) = log 2.
    # row 2: gamma 0.5, mu 0, sigma^2 2, alpha 0.5: slab -1/4 (1 + log 2 - 2), spike 0.
    mu = torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0], [0.0], [math.log(2)]], dtype=torch.float64)
    gamma = torch.tensor([[0.5], [1.0], [0.5]], dtype=torch.float64)
    kl = spike_slab_kl(mu, logvar, gamma, alpha=0.5)
    assert kl.tolist() == pytest.approx([0.0, 0.5 + math.log(2), -0.25 * (math.log(2) - 1)], abs=1e-5)  # gamma 1 is clamped


def test_spike_slab_kl_sums_dimensions_and_uses_alpha():
    # gamma 0.5 against alpha 0.2, slab equal to the prior: 0.5 log(0.5/0.2) + 0.5 log(0.5/0.8) per dimension
    gamma = torch.full((2, 3), 0.5, dtype=torch.float64)
    kl = spike_slab_kl(torch.zeros_like(gamma), torch.zeros_like(gamma), gamma, alpha=0.2)
    per_dim = 0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.8)
    assert kl.tolist() == pytest.approx([3 * per_dim, 3 * per_dim])


def test_bernoulli_jsd_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.3], [0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [0.5, 0.3], [1.0, 0.0]], dtype=torch.float64)
    # opposite certainties: log 2 per dimension; equal rows: 0;
    # (0.5 vs 1) and (0.5 vs 0): H(0.75) - (H(0.5) + 0) / 2 each.
    one = _h(0.75) - _h(0.5) / 2
    assert bernoulli_jsd(p, q).tolist() == pytest.approx([2 * math.log(2), 0.0, 2 * one], abs=1e-5)
    assert bernoulli_jsd(q, p).tolist() == pytest.approx(bernoulli_jsd(p, q).tolist())


def test_pairwise_and_mean_pairwise_jsd():
    g = torch.tensor([[0.9, 0.1], [0.2, 0.7], [0.5, 0.5]], dtype=torch.float64)
    pairs = pairwise_bernoulli_jsd(g)
    assert pairs.shape == (3, 3) and torch.allclose(pairs, pairs.T) and pairs.diagonal().abs().max() < 1e-12
    assert pairs[0, 1].item() == pytest.approx(bernoulli_jsd(g[:1], g[1:2]).item())
    expected = (pairs[0, 1] + pairs[0, 2] + pairs[1, 2]).item() / 3
    assert mean_pairwise_jsd(g).item() == pytest.approx(expected)
    with pytest.raises(InputError, match="at least 2 rows"):
        mean_pairwise_jsd(g[:1])


def test_class_alignment_loss_hand_computed():
    # class 0: two identical rows (JSD 0); class 1: rows (1, 0) and (0, 1) -> 2 log 2; class 2 has one sample (skipped)
    gamma = torch.tensor([[0.3, 0.6], [0.3, 0.6], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2])
    assert class_alignment_loss(gamma, labels).item() == pytest.approx((0 + 2 * math.log(2)) / 2, abs=1e-5)


def test_class_alignment_loss_pulls_same_class_rows_together():
    logits = torch.tensor([[2.0, -1.0], [-1.0, 2.0], [0.0, 0.0], [0.5, -0.5]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    before = class_alignment_loss(torch.sigmoid(logits), labels)
    before.backward()
    with torch.no_grad():
        after = class_alignment_loss(torch.sigmoid(logits - 0.5 * logits.grad), labels)
    assert after < before


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(InputError, match=r"lie in \[0, 1\]"):
        class_alignment_loss(torch.tensor([[1.5, 0.0], [0.0, 0.0]]), torch.tensor([0, 0]))
    with pytest.raises(InputError, match="none has a pair"):
        class_alignment_loss(torch.rand(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="integer class indices"):
        class_alignment_loss(torch.rand(2, 2), torch.tensor([0.0, 0.0]))
    with pytest.raises(InputError, match="alpha"):
        spike_slab_kl(torch.zeros(1, 2), torch.zeros(1, 2), torch.full((1, 2), 0.5), alpha=1.0)
    with pytest.raises(InputError, match="one shape"):
        spike_slab_kl(torch.zeros(1, 2), torch.zeros(1, 3), torch.full((1, 2), 0.5), alpha=0.1)
    with pytest.raises(InputError, match="NaN"):
        bernoulli_jsd(torch.tensor([[float("nan")]]), torch.tensor([[0.5]]))
