"""The tanh presence loss of PIP-Net, and ProtoS-ViT's official form of it on patch similarities.

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


def similarity_tanh_loss(similarities: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """The official ProtoS-ViT tanh loss, on the patch similarities before the prototype head:
    ``L_T = -1/P sum_p log(tanh(sum_{b,i,j} A[b, p, i, j]) + eps)``.

    ``similarities (B, P, h, w)`` are the softmax-normalised cosine similarities ``A`` of every
    patch to every prototype (:meth:`sparsex.models.protosvit.ProtoSViTHead.similarities`). This
    is :func:`tanh_loss` with each patch of each image as a row (``(B h w, P)``) and ``eps``
    1e-20, as ``ClassificationModulePrune._calculate_loss`` in github.com/hturbe/protosvit
    computes it (weight 1, from the first step).
    """
    check_tensor(similarities, "similarities", "(B, P, h, w)", nonempty=True)
    return tanh_loss(similarities.permute(0, 2, 3, 1).flatten(0, 2), eps=eps)
