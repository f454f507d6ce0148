"""Bugs of peer implementations that sparsex does not copy (docs/references.md).

Each test transcribes the peer's arithmetic as its code does it, shows it giving the wrong answer
on a hand case, and shows sparsex's public function giving the right one.
"""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from sparsex.metrics import deletion_auc, local_size_all_classes, stability
from sparsex.partworld.classes import CLASS_TABLE, NUM_CLASSES
from sparsex.partworld.protocols import minimal_sufficient_part_sets

# ---------------------------------------------------------------------------------------------
# FunnyBirds (github visinf/funnybirds, funnybirds_complete/datasets/funny_birds.py,
# FunnyBirds.get_minimal_sufficient_part_sets).


def funnybirds_minimal_sets(table: list[tuple[int, ...]], class_idx: int) -> list[frozenset[int]]:
    """The peer's loops: a subset is recorded as sufficient only when the check ``i == len - 1``
    is reached, but the query class itself is skipped with ``continue`` before that check, so for
    the last class no subset is ever recorded."""
    slots = range(len(table[0]))
    subsets = [s for size in range(1, len(table[0]) + 1) for s in itertools.combinations(slots, size)]
    sufficient = []
    for subset in subsets:
        for i, other in enumerate(table):
            if i == class_idx:
                continue
            if all(other[k] == table[class_idx][k] for k in subset):  # set(subset) <= set(other's attributes)
                break
            if i == len(table) - 1:
                sufficient.append(subset)
    minimal = []
    for current in sufficient:
        for i, subset in enumerate(sufficient):
            if set(current) > set(subset):
                break
            if i == len(sufficient) - 1:
                minimal.append(current)
    return [frozenset(s) for s in minimal]


def test_funnybirds_records_no_minimal_set_for_the_last_class():
    # Hand case: classes (0, 0), (0, 1), (1, 1). Class 2's slot 0 (variant 1) is no other class's,
    # so {0} is its minimal sufficient set; the peer returns none (CSDC then scores 0 for class 2).
    table = [(0, 0), (0, 1), (1, 1)]
    assert funnybirds_minimal_sets(table, 2) == []
    assert funnybirds_minimal_sets(table, 0) == [frozenset({1})]  # other classes are fine: (0, 0)'s slot 1
    # On sparsex's class table the transcription agrees with sparsex for every class but the last ...
    for label in range(NUM_CLASSES - 1):
        assert set(funnybirds_minimal_sets(list(CLASS_TABLE), label)) == set(minimal_sufficient_part_sets(label))
    # ... where it finds nothing and sparsex finds the minimal sets.
    last = NUM_CLASSES - 1
    assert funnybirds_minimal_sets(list(CLASS_TABLE), last) == []
    sets = minimal_sufficient_part_sets(last)
    # By hand: class 23 is (3, 0, 1, 1, 2, 2); the classes with beak variant 3 (1, 2, 5, 6, 15, 18, 19,
    # 22) have slot-1 variants 1, 2, 1, 3, 3, 1, 2, 2, never 0, so {0, 1} is sufficient; {0} and {1}
    # alone are not (class 1 shares slot 0, class 0 slot 1).
    assert CLASS_TABLE[last] == (3, 0, 1, 1, 2, 2) and frozenset({0, 1}) in sets
    for s in sets:  # every set is sufficient and minimal
        others = [row for c, row in enumerate(CLASS_TABLE) if c != last]
        assert all(any(row[k] != CLASS_TABLE[last][k] for k in s) for row in others)
        for k in s:
            assert any(all(row[j] == CLASS_TABLE[last][j] for j in s - {k}) for row in others)


# ---------------------------------------------------------------------------------------------
# PIP-Net (github M-Nauta/PIPNet, pipnet/test.py, eval_pipnet: "local_size_all_classes").


def pipnet_local_size_all_classes(pooled: torch.Tensor, weight: torch.Tensor, batch_size: int) -> float:
    """The peer's lines: the weights are clamped at ``w - 1e-3``; per batch the ``(K, B, P)``
    contributions are summed over ``dim=1``, which is the *batch*, then counted per class and
    summed over classes; the total is divided by the number of images."""
    weight = torch.clamp(weight - 1e-3, min=0.0)
    total = 0.0
    for xs in pooled.split(batch_size):
        repeated_weight = weight.unsqueeze(1).repeat(1, xs.shape[0], 1)
        local_size = torch.count_nonzero(torch.gt(torch.relu((xs * repeated_weight) - 1e-3).sum(dim=1), 0.0).float(),
                                         dim=1).float()
        total += local_size.sum().item()
    return total / len(pooled)


def test_pipnet_local_size_depends_on_the_batch_size():
    # Hand case: 4 identical images, each with prototype 0 (score 1) the only evidence, for class 0.
    # Every image has local size 1. The peer counts prototype 0 once per *batch*: 4/4, 2/4, 1/4.
    pooled = torch.tensor([[1.0, 0.0]] * 4)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert [pipnet_local_size_all_classes(pooled, weight, b) for b in (1, 2, 4)] == [1.0, 0.5, 0.25]
    effective = torch.clamp(weight - 1e-3, min=0.0)
    assert local_size_all_classes(pooled, effective).tolist() == [1, 1, 1, 1]  # per image, summed over classes


# ---------------------------------------------------------------------------------------------
# EvalProtoPNet (github hqhQAQ/EvalProtoPNet, util/eval_stability.py, evaluate_stability).


def evalprotopnet_is_stable(proto_to_part: np.ndarray, proto_to_part_perturb: np.ndarray) -> np.ndarray:
    """The peer's line: ``((proto_to_part - proto_to_part_perturb).sum(axis=-1) == 0)``."""
    return (proto_to_part - proto_to_part_perturb).sum(axis=-1) == 0


def test_evalprotopnet_calls_swapped_parts_stable():
    # Hand case: one prototype of class 0 on one image of class 0 covers part 0 on the clean image
    # and part 1 on the noisy one: [1, 0] vs [0, 1]. The differences [1, -1] sum to 0.
    clean, noisy = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert evalprotopnet_is_stable(clean, noisy).tolist() == [True]
    assert evalprotopnet_is_stable(np.array([[1.0, 1.0]]), np.array([[1.0, 0.0]])).tolist() == [False]
    part_vecs = torch.tensor([[[True, False]]])  # (N, P, K) = (1, 1, 2)
    noisy_part_vecs = torch.tensor([[[False, True]]])
    labels, classes = torch.tensor([0]), torch.tensor([0])
    assert stability(part_vecs, noisy_part_vecs, labels, classes) == 0.0  # the vectors differ
    assert stability(part_vecs, part_vecs.clone(), labels, classes) == 1.0


# ---------------------------------------------------------------------------------------------
# Quantus (github understandable-machine-intelligence-lab/Quantus,
# quantus/metrics/faithfulness/region_perturbation.py, RegionPerturbation.evaluate_instance and
# get_auc_score; quantus/helpers/utils.py, calculate_auc = np.trapz(values, dx=1)).


def quantus_region_perturbation_auc(probabilities: list[float]) -> float:
    """The peer's curve is ``y(x) - y(x_k)`` for ``k = 1..S`` (the unperturbed point is not on
    it), integrated by the trapezoid rule with ``dx = 1`` (``np.trapz``; ``torch.trapezoid`` here, the same rule)."""
    curve = [probabilities[0] - p for p in probabilities[1:]]
    return float(torch.trapezoid(torch.tensor(curve, dtype=torch.float64), dx=1))


class TwoPixelModel(nn.Module):
    """Logits ``(log a, log(1 - a))`` with ``a = 0.2 + 0.4 x_0 + 0.2 x_1`` on a 1 x 2 image of
    ones; deleting pixel 0, then pixel 1 (to 0) gives class-0 probabilities 0.8, 0.4, 0.2."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.tensor([0.4, 0.2], dtype=torch.float64), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = 0.2 + (x.mean(dim=1).flatten(1) * self.weights).sum(dim=1)
        return torch.stack([a.log(), (1 - a).log()], dim=1)


def test_quantus_region_perturbation_auc_relation():
    # S = 2 steps, p = (0.8, 0.4, 0.2). sparsex: (1/2) [(0.8 + 0.4) / 2 + (0.4 + 0.2) / 2] = 0.45.
    # Quantus: curve (0.8 - 0.4, 0.8 - 0.2) = (0.4, 0.6), area (0.4 + 0.6) / 2 = 0.5.
    # Relation: AUC_Q = (S - 1/2) p_0 + p_1 / 2 - S AUC_sparsex = 1.5 * 0.8 + 0.2 - 0.9 = 0.5.
    x = torch.ones(1, 3, 1, 2, dtype=torch.float64)
    attributions = torch.tensor([[[[2.0, 1.0]]]], dtype=torch.float64)
    ours = float(deletion_auc(TwoPixelModel(), x, attributions, baseline="zeros", steps=2)[0])
    assert ours == pytest.approx(0.45, abs=1e-6)
    probabilities, steps = [0.8, 0.4, 0.2], 2
    theirs = quantus_region_perturbation_auc(probabilities)
    assert theirs == pytest.approx(0.5)
    assert theirs == pytest.approx((steps - 0.5) * probabilities[0] + probabilities[1] / 2 - steps * ours, abs=1e-6)
