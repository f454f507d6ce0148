"""The terms of the minimal-mask objective ("Minimalist Explanation Generation and Circuit
Discovery", arXiv 2509.25686): the explanation ``e = m * x + (1 - m) * fill`` must keep the
classifier's internal activations (:func:`activation_matching_loss`) while the mask ``m`` stays
small (:func:`mask_area_loss`), compact (:func:`total_variation_loss`) and binary
(:func:`binarisation_loss`). Label consistency is plain cross-entropy towards the classifier's
top-1 label on ``x``; :func:`deletion_loss` is the destroyer term of amortised saliency (Dabkowski
& Gal 2017): removing the most important pixels must take the label away. Masks are
``(B, 1, H, W)`` in ``[0, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_number, check_tensor
from ..errors import InputError
from .asl import check_class_indices, check_logits


def activation_matching_loss(reference: torch.Tensor, explained: torch.Tensor, kl_weight: float = 1.0,
                             cosine_weight: float = 1.0) -> torch.Tensor:
    """How far the activations of ``e`` are from those of ``x`` at one layer.

    For activations ``a (B, C, ...)`` of ``x`` and ``b`` of ``e`` (same shape), with the channel
    softmax ``p = softmax_c(a)``, ``q = softmax_c(b)`` taken at every location ``l``::

        L = kl_weight * 1/(B L) sum_{b,l} KL(p_bl || q_bl)
            + cosine_weight * 1/B sum_b (1 - cos(a_b, b_b))

    (the cosine over each image's whole flattened activation). The KL aligns which channels
    dominate at each location (the distribution alignment), the cosine the overall pattern.
    ``reference`` is treated as a constant target. Returns a scalar.
    """
    for name, x in (("reference activations", reference), ("explained activations", explained)):
        dims = x.dim() if isinstance(x, torch.Tensor) else 2
        check_tensor(x, name, "(" + ", ".join(["B", "C", *(f"L{i}" for i in range(1, dims - 1))]) + ")", nonempty=True)
    if reference.shape != explained.shape or reference.dim() < 2:
        raise InputError(f"activations must have equal shapes (B, C, ...), got {tuple(reference.shape)} "
                         f"and {tuple(explained.shape)}")
    check_number(kl_weight, "kl_weight", 0)
    check_number(cosine_weight, "cosine_weight", 0)
    a, b = reference.detach().flatten(2), explained.flatten(2)  # (B, C, L)
    kl = F.kl_div(F.log_softmax(b, dim=1), F.log_softmax(a, dim=1), reduction="none", log_target=True).sum(dim=1).mean()
    cosine = F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-8).mean()
    return kl_weight * kl + cosine_weight * (1 - cosine)


def mask_area_loss(mask: torch.Tensor, target: float = 0.0) -> torch.Tensor:
    """Area of the mask above a target: ``1/B sum_b relu(a_b - target)`` with ``a_b`` the mean of
    ``m_b`` over its pixels. ``target = 0`` is the L1 area ``1/(B H W) sum m`` (``m >= 0``); a
    target lets masks at or below that area feel no area pressure at all."""
    check_tensor(mask, "mask", "(B, 1, H, W)", nonempty=True)
    check_number(target, "target area", 0, 1)
    return torch.relu(mask.flatten(1).mean(dim=1) - target).mean()


def total_variation_loss(mask: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, a compactness prior:
    ``TV(m) = 1/B sum_b [ mean_{i,j} |m[i+1, j] - m[i, j]| + mean_{i,j} |m[i, j+1] - m[i, j]| ]``."""
    check_tensor(mask, "mask", "(B, 1, H, W)", nonempty=True)
    vertical = (mask[:, :, 1:, :] - mask[:, :, :-1, :]).abs().flatten(1).mean(dim=1)
    horizontal = (mask[:, :, :, 1:] - mask[:, :, :, :-1]).abs().flatten(1).mean(dim=1)
    return (vertical + horizontal).mean()


def binarisation_loss(mask: torch.Tensor) -> torch.Tensor:
    """Binarisation prior ``1/(B H W) sum m (1 - m)``: zero exactly on a 0/1 mask, largest (1/4
    per pixel) at ``m = 0.5``."""
    check_tensor(mask, "mask", "(B, 1, H, W)", nonempty=True)
    return (mask * (1 - mask)).mean()


def deletion_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The destroyer term: ``1/B sum_b softmax(f(x_del))_b[y_b]``, the probability the classifier
    still gives the label ``y`` once the explanation's most important pixels are removed from the
    image (``x_del = (1 - S) x + S fill``): the ``lambda_3 f_c(Phi(x, 1 - m))^lambda_4`` term of
    Dabkowski & Gal 2017 ("Real Time Image Saliency for Black Box Classifiers") with
    ``lambda_4 = 1``, i.e. one point of the RISE deletion curve.

    ``logits (B, K)`` of the deleted images, ``labels (B,)`` class indices in ``[0, K)``. Returns a
    scalar in ``[0, 1]``.
    """
    labels = check_class_indices(check_logits(logits), labels)
    return logits.softmax(dim=1).gather(1, labels.long()[:, None]).mean()
