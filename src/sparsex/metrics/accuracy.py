"""Accuracy with abstentions: the one place sparsex turns logits and labels into accuracy.

An image **abstains** when its ``K >= 2`` logits are all equal (a tie among all classes, e.g. a
prototype head whose every importance is under its threshold gives all-zero logits). Its
arg-max is then the lowest class index by convention, not a decision, so an abstention counts
as wrong for the accuracy whatever its label, and the fraction of abstentions is reported
beside it (docs/metrics.md, section 1; docs/references.md)::

    abstains_n = [K >= 2 and max_k z_nk = min_k z_nk]
    accuracy   = 1/N sum_n [argmax_k z_nk = y_n and not abstains_n]
    abstention = 1/N sum_n abstains_n

A tie of some classes below the top, or of the top with some but not all others, is not an
abstention (the arg-max still excludes classes; ties go to the lowest index). Probabilities work
in place of logits where the map from logits is strictly increasing per class (softmax, sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..checks import check_tensor
from .base import Metric, _check_labels, _check_same_device

#: The score keys :func:`accuracy_with_abstentions` returns.
ACCURACY, ABSTENTION = "accuracy", "abstention"


@torch.no_grad()
def abstains(logits: torch.Tensor) -> torch.Tensor:
    """Which images abstain: ``(N,)`` bool, True where all ``K >= 2`` logits of ``logits (N, K)``
    are equal (with one class nothing is tied, so nothing abstains)."""
    check_tensor(logits, "logits", "(N, K)", nonempty=True)
    if logits.shape[1] < 2:
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    return logits.amax(dim=1) == logits.amin(dim=1)


@torch.no_grad()
def accuracy_with_abstentions(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``{"accuracy": ..., "abstention": ...}`` of ``logits (N, K)`` against integer labels
    ``targets (N,)``, both in ``[0, 1]`` (see the module docstring: an abstaining image is wrong)."""
    check_tensor(logits, "logits", "(N, K)", nonempty=True)
    _check_labels(targets, "targets", *logits.shape)
    _check_same_device(logits=logits, targets=targets)
    abstained = abstains(logits)
    correct = (logits.argmax(dim=1) == targets) & ~abstained
    return {ACCURACY: correct.double().mean().item(), ABSTENTION: abstained.double().mean().item()}


@dataclass(frozen=True)
class Abstention(Metric):
    """The fraction of abstaining images as a metric (lower is better): ``Abstention()(logits) -> float``."""

    name: ClassVar[str] = ABSTENTION

    def __call__(self, logits: torch.Tensor) -> float:
        return abstains(logits).double().mean().item()
