"""Grading a dictionary: reconstruction and sparsity on any activations, and against the part
world's ground-truth concepts (:mod:`~sparsex.dictionaries.concepts`) where it has them.

For codes ``z (P, N)`` of ``P`` patches and the concept labels ``y (P, K)`` (bool):

- ``auroc[n, c]``: the Mann-Whitney AUROC of atom ``n``'s code as a detector of concept ``c``,
  ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the sum of the positives'
  average ranks (ties share a rank); for signed codes (PCA, ICA) ``max(auroc, 1 - auroc)``;
- concept recovery: per concept the best atom's AUROC and its best F1 over thresholds
  (``F1 = 2 TP / (2 TP + FP + FN)``, predicting the concept where the code is >= the threshold);
  ``recovery_auroc`` / ``recovery_f1`` their means over concepts, ``recovered_fraction`` the
  share of concepts whose best AUROC is >= 0.9 (concepts no patch, or every patch, contains are
  left out); one atom may be the best for several concepts (a "head parts" atom for the beak, the
  eye and the crest), so ``recovered_distinct`` also gives each concept its own atom: the
  one-to-one assignment of atoms to concepts with the largest total AUROC (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment``), and the share of concepts whose assigned atom has
  AUROC >= 0.9 (a concept left without an atom counts as missed);
- ``purity[n] = max_c sum_{p : c in p} |z_pn| / sum_p |z_pn|`` over the leaf concepts (slot x
  variant and the body); ``purity`` the mean over atoms that fire; ``unmatched`` the share of atoms
  whose best AUROC over all concepts is < 0.9;
- ``fvu = sum_p ||x_p - x^_p||^2 / sum_p ||x_p - mean x||^2``; ``l0`` the mean number of non-zero
  codes per patch; ``dead`` the share of atoms that are zero on every patch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..errors import InputError

RECOVERED_AUROC = 0.9


def average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Ranks ``1..P`` of every column of ``scores (P, N)``, tied values sharing their mean rank (float64)."""
    ranks = torch.empty(scores.shape, dtype=torch.float64)
    for column in range(scores.shape[1]):
        values, order = scores[:, column].sort()
        _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
        last = counts.cumsum(0).double()
        ranks[order, column] = ((last - counts + 1 + last) / 2)[inverse]
    return ranks


def auroc_matrix(scores: torch.Tensor, labels: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """AUROC ``(N, K)`` of every score column ``scores (P, N)`` for every label column ``labels
    (P, K)`` (NaN where a label column has no positives or no negatives)."""
    if scores.dim() != 2 or labels.dim() != 2 or scores.shape[0] != labels.shape[0]:
        raise InputError(f"scores (P, N) and labels (P, K) must share P, got {tuple(scores.shape)} and {tuple(labels.shape)}")
    ranks = average_ranks(scores.double())
    positive = labels.double()
    n_pos = positive.sum(0)
    n_neg = labels.shape[0] - n_pos
    auc = (ranks.T @ positive - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc = torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))
    return torch.maximum(auc, 1 - auc) if signed else auc


def best_f1(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The largest F1 of the detector ``scores >= t`` over all thresholds ``t`` (the scores' values)."""
    order = torch.argsort(scores.double(), descending=True)
    sorted_scores, hits = scores.double()[order], labels.bool()[order].double()
    true_pos = hits.cumsum(0)
    predicted = torch.arange(1, len(hits) + 1, dtype=torch.float64)
    last_of_tie = torch.ones(len(hits), dtype=torch.bool)  # a threshold takes every score equal to it
    last_of_tie[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    f1 = 2 * true_pos / (predicted + hits.sum())
    return float(f1[last_of_tie].max()) if len(hits) else float("nan")


def concept_recovery(codes: torch.Tensor, concepts: torch.Tensor, signed: bool = False,
                     auroc: torch.Tensor | None = None) -> dict[str, Any]:
    """Per concept the best atom, its AUROC and F1; their means and the recovered fraction."""
    auroc = auroc_matrix(codes, concepts, signed) if auroc is None else auroc
    gradable = ~torch.isnan(auroc).all(0)
    best_auroc, best_atom = torch.nan_to_num(auroc, nan=-1.0).max(0)
    f1 = []
    for c, atom in enumerate(best_atom.tolist()):
        if not gradable[c]:
            f1.append(float("nan"))
            continue
        score = codes[:, atom].double()
        if signed and float(auroc_matrix(score[:, None], concepts[:, c:c + 1])[0, 0]) < 0.5:
            score = -score
        f1.append(best_f1(score, concepts[:, c]))
    best = best_auroc.double().masked_fill(~gradable, float("nan"))
    f1_t = torch.tensor(f1, dtype=torch.float64)
    graded = torch.nan_to_num(auroc[:, gradable].double(), nan=0.0).numpy()
    atoms, assigned = linear_sum_assignment(graded, maximize=True)
    distinct = np.zeros(graded.shape[1])
    distinct[assigned] = graded[atoms, assigned]
    return {
        "recovery_auroc": float(best[gradable].mean()) if gradable.any() else float("nan"),
        "recovery_f1": float(f1_t[gradable].mean()) if gradable.any() else float("nan"),
        "recovered_fraction": float((best[gradable] >= RECOVERED_AUROC).double().mean()) if gradable.any() else float("nan"),
        "recovered_distinct": float((distinct >= RECOVERED_AUROC).mean()) if gradable.any() else float("nan"),
        "best_atom": best_atom.tolist(),
        "best_auroc": best.tolist(),
        "best_f1": f1,
    }


def atom_purity(codes: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    """Per atom the largest share of its activation mass ``|z|`` on one concept (NaN for atoms that never fire)."""
    mass = codes.abs().double()
    share = (mass.T @ concepts.double()) / mass.sum(0)[:, None]
    return share.max(1).values


def fvu(x: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Fraction of variance unexplained ``sum ||x - x^||^2 / sum ||x - mean x||^2``."""
    x, reconstruction = x.double(), reconstruction.double()
    return float((x - reconstruction).square().sum() / (x - x.mean(0)).square().sum())


def mean_l0(codes: torch.Tensor) -> float:
    """Mean number of non-zero codes per sample."""
    return float((codes != 0).sum(1).double().mean())


def dead_fraction(codes: torch.Tensor) -> float:
    """Share of atoms whose code is zero on every sample."""
    return float((~(codes != 0).any(0)).double().mean())


def reconstruction_metrics(dictionary, activations: torch.Tensor, codes: torch.Tensor) -> dict[str, float]:
    """``fvu``, ``l0`` and ``dead`` of ``dictionary``'s ``codes`` for raw ``activations``."""
    return {"fvu": fvu(dictionary.standardize(activations), dictionary.decode(codes)), "l0": mean_l0(codes),
            "dead": dead_fraction(codes)}


def concept_metrics(codes: torch.Tensor, concepts: torch.Tensor, leaves: list[int], signed: bool = False) -> dict[str, Any]:
    """Concept recovery, purity and the unmatched share of ``codes`` against ``concepts`` (see the module)."""
    auroc = auroc_matrix(codes, concepts, signed)
    recovery = concept_recovery(codes, concepts, signed, auroc=auroc)
    purity = atom_purity(codes, concepts[:, leaves])
    best_per_atom = torch.nan_to_num(auroc, nan=0.0).max(1).values
    fired = ~torch.isnan(purity)
    return {**recovery, "purity": float(purity[fired].mean()) if fired.any() else float("nan"),
            "unmatched": float((best_per_atom < RECOVERED_AUROC).double().mean()),
            "atom_purity": np.nan_to_num(purity.numpy(), nan=0.0).tolist(), "auroc_matrix": auroc.tolist()}
