"""Hoyer-Square sparsity penalty.

Yang, Wen, Li, "DeepHoyer: Learning Sparser Neural Network with Differentiable Scale-Invariant
Sparsity Measures", ICLR 2020 (arXiv 1908.09979), Eq. 4. ProtoS-ViT (arXiv 2406.10025) applies
it to each image's prototype importances so that few prototypes carry every decision; sparsex
applies the same term to SIDE's pruned scores sheet (:mod:`sparsex.train.side`).
"""

from __future__ import annotations

import torch

from ..checks import check_number, check_tensor
from ..errors import InputError
from .asl import check_class_indices


def hoyer_square(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Hoyer-Square of every row of ``x (B, P)``: ``HS(x) = (sum_p |x_p|)^2 / sum_p x_p^2``.

    Scale invariant, between 1 (one non-zero entry) and ``P`` (all entries equal in magnitude);
    for a row with ``n`` equal non-zero entries it is exactly ``n``, a differentiable count of the
    non-zeros. An all-zero row gives 0 (``eps`` guards the division). Returns ``(B,)``.
    """
    check_tensor(x, "importances", "(B, P)")
    check_number(eps, "eps", 0)
    return x.abs().sum(dim=1).square() / (x.square().sum(dim=1) + eps)


def hoyer_square_loss(importances: torch.Tensor) -> torch.Tensor:
    """Mean Hoyer-Square over the rows of ``importances (B, P)``:
    ``L_HS = 1/B sum_b HS(importances_b)`` (see :func:`hoyer_square`). In ProtoS-ViT the row of
    image ``b`` is ``s_b * W[y_b]``, its prototype scores times its class's weights."""
    check_tensor(importances, "importances", "(B, P)", nonempty=True)
    return hoyer_square(importances).mean()


def class_importance_hoyer_loss(scores: torch.Tensor, class_weights: torch.Tensor,
                                targets: torch.Tensor) -> torch.Tensor:
    """Hoyer-Square of each image's importances for its own class, averaged:
    ``L = 1/B sum_b HS(s_b * W[y_b])`` with scores ``s (B, P)``, the scores sheet ``W (K, P)``
    and class indices ``y (B,)`` (ProtoS-ViT's sparsity term)."""
    check_tensor(scores, "scores", "(B, P)", nonempty=True)
    check_tensor(class_weights, "class_weights", "(K, P)", nonempty=True)
    if class_weights.shape[1] != scores.shape[1] or class_weights.device != scores.device:
        raise InputError(f"class_weights {tuple(class_weights.shape)} on {class_weights.device} do not match the scores "
                         f"{tuple(scores.shape)} on {scores.device} (same number of prototypes P, same device)")
    check_class_indices(scores, targets, num_classes=class_weights.shape[0], what="scores")
    return hoyer_square_loss(scores * class_weights[targets.long()])
