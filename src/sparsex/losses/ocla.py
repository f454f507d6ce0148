"""SIDE's One-Class-Left-Above (OCLA) calibration loss.

SIDE (arXiv 2507.19321) ends training with a calibration stage whose goal is that exactly one
class, the true one, has a sigmoid probability above the threshold ``t``: every wrong class
above ``t`` is pushed down and the true class below ``t`` is pushed up. The paper describes the
loss in words; :func:`ocla_loss` is the project's formulation of that description, a hinge on
probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_number
from ..errors import InputError
from .asl import check_class_indices, check_logits


def ocla_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    threshold: float = 0.5,
    weight: float = 200.0,
    margin: float = 0.0,
) -> torch.Tensor:
    """One-Class-Left-Above loss: a hinge on the sigmoid probabilities around ``t``.

    With ``p = sigmoid(logits)`` and margin ``m``::

        L = weight * 1/B sum_b [ sum_{k != y_b} relu(p_bk - (t - m)) + relu((t + m) - p_b,y_b) ]

    With ``m = 0`` it is zero exactly when, for every image, the true class is at or above ``t``
    and every other class at or below it (the OCLA score's condition, up to ties at ``t``); a
    margin ``m > 0`` asks for the true class at ``t + m`` and the others at ``t - m``.

    ``logits (B, K)``; ``targets`` integer class indices ``(B,)``; ``threshold`` ``t`` in
    ``(0, 1)``; ``weight >= 0`` scales the loss (SIDE's calibration stage uses 200); ``margin``
    ``m >= 0`` with ``0 <= t - m`` and ``t + m <= 1``. Returns a scalar tensor. This is the
    project's formulation of the paper's verbal description.
    """
    check_logits(logits)
    check_class_indices(logits, targets)
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise InputError(f"threshold must be in (0, 1), got {threshold!r}")
    check_number(weight, "weight", 0)

    if not (isinstance(margin, (int, float)) and 0 <= margin and 0 <= threshold - margin and threshold + margin <= 1):
        raise InputError(f"margin must be >= 0 with threshold - margin >= 0 and threshold + margin <= 1, got {margin!r}")

    p = torch.sigmoid(logits)
    targets = targets.long()
    wrong = 1 - F.one_hot(targets, logits.shape[1]).to(p.dtype)
    wrong_above = (torch.relu(p - (threshold - margin)) * wrong).sum(dim=1)
    true_below = torch.relu(threshold + margin - p.gather(1, targets.unsqueeze(1)).squeeze(1))
    return weight * (wrong_above + true_below).mean()
