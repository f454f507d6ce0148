"""AUROC, F1, concept recovery, purity, FVU, L0 and dead atoms on hand-computed cases."""

import math

import pytest
import torch

from sparsex.dictionaries import atom_purity, auroc_matrix, best_f1, concept_recovery, dead_fraction, fvu, mean_l0
from sparsex.errors import InputError


def test_auroc_with_ties_and_signs():
    scores = torch.tensor([[0.1], [0.4], [0.35], [0.8]])
    labels = torch.tensor([[False], [False], [True], [True]])
    assert auroc_matrix(scores, labels)[0, 0].item() == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered
    assert auroc_matrix(-scores, labels)[0, 0].item() == pytest.approx(0.25)
    assert auroc_matrix(-scores, labels, signed=True)[0, 0].item() == pytest.approx(0.75)
    tied = auroc_matrix(torch.tensor([[1.0], [1.0], [0.0], [0.0]]), torch.tensor([[True], [False], [True], [False]]))
    assert tied[0, 0].item() == pytest.approx(0.5)
    assert math.isnan(auroc_matrix(scores, torch.ones(4, 1, dtype=torch.bool))[0, 0].item())  # no negatives
    with pytest.raises(InputError):
        auroc_matrix(scores, labels[:3])


def test_best_f1_over_thresholds():
    # top 3 predicted positive: TP 2, FP 1, FN 0 -> F1 = 4 / 5
    assert best_f1(torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([True, False, True, False])) == pytest.approx(0.8)
    # tied scores are one threshold: {0.5, 0.5} -> TP 1 FP 1 (F1 2/3 with FN 0); all -> TP 1 FP 2 (F1 1/2)
    assert best_f1(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([True, False, False])) == pytest.approx(2 / 3)


def test_concept_recovery_picks_the_best_atom():
    codes = torch.tensor([[0.0, 2.0], [1.0, 3.0], [0.5, 0.0], [1.0, 0.0]])
    concepts = torch.tensor([[True, False], [True, False], [False, True], [False, True]])
    result = concept_recovery(codes, concepts)
    assert result["best_atom"] == [1, 0]
    assert result["best_auroc"][0] == pytest.approx(1.0)  # atom 1 separates concept 0 perfectly
    assert result["best_auroc"][1] == pytest.approx(0.625)  # atom 0: pairs (0.5,0) won, (0.5,1) lost, (1,0) won, (1,1) tied
    assert result["recovered_fraction"] == pytest.approx(0.5)
    assert result["recovery_auroc"] == pytest.approx((1.0 + 0.625) / 2)
    assert result["best_f1"][0] == pytest.approx(1.0)


def test_recovered_distinct_gives_each_concept_its_own_atom():
    """20 patches: 2 with concept 0, 2 with concept 1, 16 with neither. Atom 0 fires (1) on all four
    part patches, a "head parts" atom; atom 1 fires on one empty patch only."""
    concepts = torch.zeros(20, 2, dtype=torch.bool)
    concepts[0:2, 0] = concepts[2:4, 1] = True
    codes = torch.zeros(20, 2)
    codes[0:4, 0] = 1.0
    codes[19, 1] = 1.0
    result = concept_recovery(codes, concepts)
    # atom 0 for either concept: each positive ties the 2 other part patches and beats the 16 empty
    # ones: (16 + 2 * 0.5) / 18 = 17/18. Atom 1: each positive (0) ties 17 negatives and loses to 1: 8.5/18
    assert result["best_atom"] == [0, 0] and result["best_auroc"] == pytest.approx([17 / 18, 17 / 18])
    assert result["recovered_fraction"] == pytest.approx(1.0)
    # one atom per concept: atom 0 serves one of them (17/18), atom 1 the other (8.5/18 < 0.9)
    assert result["recovered_distinct"] == pytest.approx(0.5)
    # a third atom of its own for concept 1 (firing on its two patches) recovers both
    result = concept_recovery(torch.cat([codes, concepts[:, 1:].float()], dim=1), concepts)
    assert result["recovered_distinct"] == pytest.approx(1.0)


def test_purity_fvu_l0_dead():
    codes = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    concepts = torch.tensor([[True, False], [True, False], [False, True], [False, True]])
    purity = atom_purity(codes, concepts)
    assert purity[:2].tolist() == pytest.approx([0.5, 1.0])  # atom 0: mass 2 of 4 on each concept; atom 1 all on concept 1
    assert math.isnan(purity[2].item())  # never fires
    assert mean_l0(codes) == pytest.approx(1.0) and dead_fraction(codes) == pytest.approx(1 / 3)
    assert mean_l0(torch.tensor([[1.0, 0.0], [1.0, 2.0]])) == pytest.approx(1.5)
    assert fvu(torch.tensor([[1.0], [3.0]]), torch.tensor([[1.0], [2.0]])) == pytest.approx(0.5)  # 1 / ((1-2)^2 + (3-2)^2)
