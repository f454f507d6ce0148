import math

import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses import pairwise_bernoulli_jsd
from sparsex.metrics.latent import (
    ActiveDims,
    ProbeAccuracy,
    WithinClassJSD,
    active_dims,
    class_correlation,
    class_mean_gamma,
    classify_dimensions,
    group_correlation,
    latent_metrics,
    linear_probe_accuracy,
    within_class_jsd,
)

GAMMA = torch.tensor([[0.9, 0.6, 0.1], [0.7, 0.2, 0.5], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1, 1])


def test_active_dims_hand_computed():
    # gamma > 0.5: rows have 2, 1, 1, 1 active dimensions (0.5 itself is not active)
    assert active_dims(GAMMA) == pytest.approx(1.25)
    assert ActiveDims(threshold=0.8)(GAMMA) == pytest.approx(0.75) and not ActiveDims.higher_is_better


def test_within_class_jsd_hand_computed():
    # class 1: (1, 0, 0) vs (0, 1, 0): log 2 on two dimensions; class 0: one pair, computed pairwise
    class0 = pairwise_bernoulli_jsd(GAMMA[:2])[0, 1].item()
    expected = (class0 + 2 * math.log(2)) / 2
    assert within_class_jsd(GAMMA, LABELS) == pytest.approx(expected, abs=1e-5)
    assert WithinClassJSD()(GAMMA, LABELS) == pytest.approx(expected, abs=1e-5)
    assert within_class_jsd(GAMMA[:3], torch.tensor([0, 0, 1])) == pytest.approx(class0)  # singleton class skipped


def test_within_class_jsd_sampled_pairs_estimate_the_exact_mean():
    torch.manual_seed(0)
    gamma = torch.rand(300, 8, dtype=torch.float64)
    labels = torch.arange(300) % 3
    exact = within_class_jsd(gamma, labels, max_pairs=None)  # 100 per class: 4950 pairs each
    assert within_class_jsd(gamma, labels, max_pairs=5000) == exact
    assert within_class_jsd(gamma, labels, max_pairs=3000) == pytest.approx(exact, rel=0.02)
    assert within_class_jsd(gamma, labels, max_pairs=3000, seed=1) != within_class_jsd(gamma, labels, max_pairs=3000)


def test_class_means_and_correlation_hand_computed():
    means = class_mean_gamma(GAMMA, LABELS, 3)
    assert means[:2].flatten().tolist() == pytest.approx([0.8, 0.4, 0.3, 0.5, 0.5, 0.0])
    assert torch.isnan(means[2]).all()  # no samples of class 2
    # rows (1, 2, 3), (2, 4, 6), (3, 2, 1): r = 1 and -1; a constant row has no correlation (NaN)
    corr = class_correlation(torch.tensor([[1.0, 2, 3], [2, 4, 6], [3, 2, 1], [1, 1, 1]]))
    assert corr[0, 1].item() == pytest.approx(1.0) and corr[0, 2].item() == pytest.approx(-1.0)
    assert torch.isnan(corr[3, 0]) and corr.diagonal().tolist() == [1.0] * 4


def test_group_correlation():
    corr = torch.tensor([[1.0, 0.8, 0.6, 0.1], [0.8, 1.0, 0.4, 0.3], [0.6, 0.4, 1.0, 0.2], [0.1, 0.3, 0.2, 1.0]])
    out = group_correlation(corr, ["a", "b", "c", "d"], ["a", "b", "c"])
    assert out["within"] == pytest.approx((0.8 + 0.6 + 0.4) / 3) and out["across"] == pytest.approx((0.1 + 0.3 + 0.2) / 3)
    with pytest.raises(InputError, match="'z' are not among"):
        group_correlation(corr, ["a", "b", "c", "d"], ["a", "z"])


def test_classify_dimensions():
    means = torch.tensor([[0.9, 0.8, 0.1, 0.2], [0.7, 0.1, 0.6, 0.3], [0.95, 0.1, 0.9, 0.0]])
    table = classify_dimensions(means, ["x", "y", "z"])
    assert [r["kind"] for r in table] == ["global", "class-specific", "class-specific", "unused"]
    assert table[1]["classes"] == ["x"] and table[2]["classes"] == ["y", "z"] and table[3]["classes"] == []
    assert table[0]["mean_gamma"] == pytest.approx(0.85)


def test_linear_probe_separates_separable_codes():
    torch.manual_seed(0)
    labels = torch.arange(200) % 4
    gamma = torch.nn.functional.one_hot(labels, 4).double() * 0.8 + 0.1 * torch.rand(200, 4, dtype=torch.float64)
    assert linear_probe_accuracy(gamma[:150], labels[:150], gamma[150:], labels[150:]) == 1.0
    assert ProbeAccuracy()(gamma[:150], labels[:150], gamma[150:], labels[150:]) == 1.0
    with pytest.raises(InputError, match="at least 2 classes"):
        linear_probe_accuracy(gamma[:4:4], labels[:4:4], gamma, labels)


def test_latent_metrics_keys_and_bad_input():
    torch.manual_seed(0)
    gamma, labels = torch.rand(40, 5), torch.arange(40) % 4
    quick = latent_metrics(gamma, labels, list("abcd"))
    assert set(quick) == {"active_dims", "jsd_within"}
    full = latent_metrics(gamma, labels, list("abcd"), train_gamma=gamma, train_labels=labels)
    assert {"probe_accuracy", "correlation_matrix", "classes", "dims_global", "dims_class_specific", "dims_unused"} <= set(full)
    assert len(full["correlation_matrix"]) == 4 and full["dims_global"] + full["dims_class_specific"] + full["dims_unused"] == 5
    with pytest.raises(InputError, match=r"lie in \[0, 1\]"):
        active_dims(gamma + 1)
    with pytest.raises(InputError, match="shape"):
        within_class_jsd(gamma, labels[:3])
