"""Hoyer-Square sparsity penalty.

Yang, Wen, Li, "DeepHoyer: Learning Sparser Neural Network with Differentiable Scale-Invariant
Sparsity Measures", ICLR 2020 (arXiv 1908.09979), Eq. 4. ProtoS-ViT (arXiv 2406.10025) applies
it to each image's prototype importances so that few prototypes carry every decision; sparsex
applies the same term to SIDE's pruned scores sheet (:mod:`sparsex.train.side`).
"""

from __future__ import annotations

import math

import torch

from ..checks import check_number, check_tensor
from ..errors import InputError
from .asl import check_class_indices

SCOPES = ("true", "all")


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


def class_importance_hoyer_loss(scores: torch.Tensor, class_weights: torch.Tensor, targets: torch.Tensor | None = None,
                                *, scope: str = "true", normalise: bool = False, hoyer_weight: float = 1.0,
                                l2_weight: float = 0.0) -> torch.Tensor:
    """Hoyer-Square of each image's importances, plus an optional L2 norm, averaged over the batch.

    With scores ``s (B, P)``, the scores sheet ``W (K, P)`` and class indices ``y (B,)``, image
    ``b``'s importances ``I_b`` are ``s_b * W[y_b]`` (``scope="true"``: its own class, ``n = P``
    entries) or ``s_bp W[c, p]`` for every class ``c`` (``scope="all"``: ``n = P K`` entries,
    ``targets`` unused). Then::

        L = 1/B sum_b [ hoyer_weight * HS(I_b) / r + l2_weight * ||I_b||_2 ],  r = sqrt(n) if normalise else 1

    ``scope="true"``, no normalisation, no L2 term is sparsex's ProtoS-ViT (and SIDE) sparsity
    term. ``scope="all"``, ``normalise=True``, ``hoyer_weight=alpha=0.01``, ``l2_weight=gamma=0.01``
    is the shipped official one: ``WeightedHsLoss(structured=False, compute_importance=True)`` in
    github.com/hturbe/protosvit ``src/learning/models/utils/loss.py`` with the weights of
    ``configs/model/classification_prototype.yaml`` (there the division guard is
    ``sum(I^2 + 1e-20)``, here :func:`hoyer_square`'s ``+ 1e-12``).
    """
    if scope not in SCOPES:
        raise InputError(f"unknown Hoyer-Square scope {scope!r}; valid scopes: {', '.join(SCOPES)}")
    check_tensor(scores, "scores", "(B, P)", nonempty=True)
    check_tensor(class_weights, "class_weights", "(K, P)", nonempty=True)
    check_number(hoyer_weight, "hoyer_weight", 0)
    check_number(l2_weight, "l2_weight", 0)
    if class_weights.shape[1] != scores.shape[1] or class_weights.device != scores.device:
        raise InputError(f"class_weights {tuple(class_weights.shape)} on {class_weights.device} do not match the scores "
                         f"{tuple(scores.shape)} on {scores.device} (same number of prototypes P, same device)")
    if scope == "true":
        check_class_indices(scores, targets, num_classes=class_weights.shape[0], what="scores")
        importances = scores * class_weights[targets.long()]  # (B, P)
    else:
        importances = (scores[:, None, :] * class_weights[None]).flatten(1)  # (B, K P)
    per_image = hoyer_weight * hoyer_square(importances)
    if normalise:
        per_image = per_image / math.sqrt(importances.shape[1])
    if l2_weight:
        per_image = per_image + l2_weight * importances.norm(dim=1)
    return per_image.mean()
