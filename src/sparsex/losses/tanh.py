"""The tanh presence loss of PIP-Net.

Nauta, Schlötterer, van Keulen, Seifert, "PIP-Net: Patch-Based Intuitive Prototypes for
Interpretable Image Classification", CVPR 2023, Eq. 3. ProtoS-ViT (arXiv 2406.10025) uses it so
that every prototype is present somewhere in each batch (no prototype is left unused early on).
"""

from __future__ import annotations

import torch

from ..checks import check_number, check_tensor
from ..errors import InputError


def tanh_loss(scores: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``L_T = -1/P sum_p log(tanh(sum_b s_bp) + eps)`` over non-negative prototype scores
    ``scores (B, P)``.

    ``sum_b s_bp`` is prototype ``p``'s total presence in the batch; ``tanh`` saturates it, so
    the loss only pushes prototypes that are (nearly) absent from the whole batch, and stops
    caring once a prototype is present somewhere. Zero presence gives ``-log(eps)`` per
    prototype. Returns a scalar tensor.
    """
    check_tensor(scores, "scores", "(B, P)", nonempty=True)
    if (scores < 0).any():
        raise InputError("tanh_loss needs non-negative prototype scores")
    check_number(eps, "eps", 0, low_open=True)
    return -torch.log(torch.tanh(scores.sum(dim=0)) + eps).mean()
