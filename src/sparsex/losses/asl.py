"""Asymmetric Loss (ASL) and the plain binary cross-entropy it generalises.

Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor, "Asymmetric Loss For
Multi-Label Classification", ICCV 2021 (arXiv 2009.14119), Sec. 3: asymmetric focusing plus
asymmetric probability shifting. SIDE (arXiv 2507.19321) pretrains its sigmoid scores sheet
with it; the plain BCE is the ablation's baseline.

Also holds the input checks shared by every loss in :mod:`sparsex.losses`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_number, check_tensor
from ..errors import InputError


def check_logits(logits: torch.Tensor) -> torch.Tensor:
    """Check logits ``(B, K)``: a floating tensor with at least one row and only finite values."""
    return check_tensor(logits, "logits", "(B, K)", nonempty=True)


def check_class_indices(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None = None,
                        what: str = "logits") -> torch.Tensor:
    """Check integer class indices ``(B,)`` against ``logits (B, K)``: each in ``[0, K)``.

    ``num_classes`` overrides ``K`` (then ``logits`` is any tensor whose first dimension is ``B``,
    called ``what`` in the messages, e.g. the scores of :func:`~sparsex.losses.hoyer.class_importance_hoyer_loss`).
    """
    if not isinstance(targets, torch.Tensor):
        raise InputError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    b, k = logits.shape[0], logits.shape[1] if num_classes is None else num_classes
    if targets.shape != (b,):
        raise InputError(
            f"targets must be class indices of shape ({b},) to match {what} {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise InputError(f"class-index targets must have an integer dtype, got {targets.dtype}")
    if targets.device != logits.device:
        raise InputError(f"targets are on {targets.device} but {what} on {logits.device}")
    if ((targets < 0) | (targets >= k)).any():
        bad = targets[(targets < 0) | (targets >= k)][0].item()
        raise InputError(f"target index {bad} is out of range for {k} classes")
    return targets


def target_matrix(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targets as a ``{0, 1}`` matrix ``(B, K)`` in the logits' dtype.

    ``targets`` is either integer class indices ``(B,)`` (one-hot encoded) or a ``{0, 1}``
    matrix ``(B, K)`` of any dtype (multi-hot).
    """
    if isinstance(targets, torch.Tensor) and targets.dim() == 2:
        if targets.shape != logits.shape:
            raise InputError(f"target matrix has shape {tuple(targets.shape)} but logits have {tuple(logits.shape)}")
        if targets.device != logits.device:
            raise InputError(f"targets are on {targets.device} but logits on {logits.device}")
        if not ((targets == 0) | (targets == 1)).all():
            raise InputError("a target matrix must contain only 0 and 1")
        return targets.to(logits.dtype)
    indices = check_class_indices(logits, targets)
    return F.one_hot(indices.long(), logits.shape[1]).to(logits.dtype)


#: How :func:`asymmetric_loss` reduces over the batch: ``"mean"`` (sparsex's default) or ``"sum"`` (the reference's).
REDUCTIONS = ("mean", "sum")


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        check_number(value, name, 0)


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_pos: float = 1.0,
    gamma_neg: float = 4.0,
    margin: float = 0.05,
    eps: float = 1e-8,
    reduction: str = "mean",
) -> torch.Tensor:
    """Asymmetric Loss (Ridnik et al., ICCV 2021, Sec. 3), summed over classes, mean over the batch
    (``reduction="mean"``, the default) or summed over it (``reduction="sum"``).

    With ``p = sigmoid(logits)`` and the shifted probability ``p_m = max(p - m, 0)`` used for
    negatives::

        L_b = -sum_k [ y_bk (1 - p_bk)^{gamma+} log(p_bk) + (1 - y_bk) p_m,bk^{gamma-} log(1 - p_m,bk) ]
        L = 1/B sum_b L_b   (reduction="mean")      L = sum_b L_b   (reduction="sum")

    ``logits (B, K)``; ``targets`` integer class indices ``(B,)`` (one-hot encoded) or a
    ``{0, 1}`` matrix ``(B, K)``. Returns a scalar tensor.

    **Batch reduction.** The reference implementation (Alibaba-MIIL/ASL,
    ``src/loss_functions/losses.py``, ``AsymmetricLoss.forward``: ``return -loss.sum()``) sums
    over the batch as well; the default here averages, so its value and gradient are ``1/B``
    of the reference's (the learning rate absorbs the factor, but only at a fixed batch size).
    ``reduction="sum"`` gives the reference's value and gradient (docs/references.md, "ASL").

    ``log(p)`` is computed as ``logsigmoid(logits)`` and, for ``margin = 0``, ``log(1 - p)`` as
    ``logsigmoid(-logits)``, so ``gamma_pos = gamma_neg = margin = 0`` is exactly binary
    cross-entropy summed over classes (for ``margin > 0``, ``1 - p_m >= margin`` keeps the log
    finite). The bases ``1 - p`` and ``p_m`` of the focusing weights are clamped below at
    ``eps`` so that fractional gammas keep finite gradients where a base is 0; this changes a
    term by at most ``eps^gamma`` times a log that is itself ``O(eps)`` or exactly 0 there.
    """
    check_logits(logits)
    y = target_matrix(logits, targets)
    _check_non_negative(gamma_pos=gamma_pos, gamma_neg=gamma_neg, margin=margin)
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if not margin < 1:
        raise InputError(f"margin must be below 1, got {margin!r}")
    if not (isinstance(eps, (int, float)) and 0 < eps < 1):
        raise InputError(f"eps must be in (0, 1), got {eps!r}")

    p = torch.sigmoid(logits)
    p_m = (p - margin).clamp(min=0.0)
    log_p = F.logsigmoid(logits)
    log_one_minus_p_m = F.logsigmoid(-logits) if margin == 0 else torch.log1p(-p_m)
    focus_pos = torch.sigmoid(-logits).clamp(min=eps).pow(gamma_pos)
    focus_neg = p_m.clamp(min=eps).pow(gamma_neg)
    per_image = -(y * focus_pos * log_p + (1 - y) * focus_neg * log_one_minus_p_m).sum(dim=1)
    return per_image.sum() if reduction == "sum" else per_image.mean()


def binary_cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Plain binary cross-entropy, summed over classes and averaged over the batch (the ASL
    ablation's baseline): ``L = -1/B sum_b sum_k [y_bk log(p_bk) + (1 - y_bk) log(1 - p_bk)]``
    with ``p = sigmoid(logits)``.

    ``logits (B, K)``; ``targets`` integer class indices ``(B,)`` or a ``{0, 1}`` matrix
    ``(B, K)``. Equal to :func:`asymmetric_loss` with ``gamma_pos = gamma_neg = margin = 0``.
    """
    check_logits(logits)
    y = target_matrix(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(dim=1).mean()
