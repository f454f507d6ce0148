"""Losses of variational sparse coding (VSC) and its class alignment.

- :func:`spike_slab_kl`: the KL divergence of a spike-and-slab posterior from the spike-and-slab
  prior, Tonolini, Jensen, Murray-Smith, "Variational Sparse Coding", UAI 2019 (arXiv 1812.02833),
  Eq. 6 with the slab prior N(0, 1) and the spike prior Bernoulli(alpha).
- :func:`bernoulli_jsd` / :func:`pairwise_bernoulli_jsd`: the Jensen-Shannon divergence between
  vectors of independent Bernoulli variables (the spike probabilities gamma).
- :func:`class_alignment_loss`: the mean over classes of the mean pairwise JSD between the gamma
  vectors of same-class samples, the class-alignment loss of Sangari Abiz, Hosseini, Araabi,
  "Enhancing Interpretability of Sparse Latent Representations with Class Information"
  (arXiv 2505.14476): ``L = L_VSC + lambda L_JSD``.

All logarithms are natural (nats).
"""

from __future__ import annotations

import math

import torch

from ..checks import check_tensor
from ..errors import InputError

#: Probabilities are clamped to ``[EPS, 1 - EPS]`` before logarithms (finite values and gradients).
EPS = 1e-7
#: The largest value of :func:`bernoulli_jsd` per dimension (one probability 0, the other 1).
JSD_MAX_PER_DIM = math.log(2)


def _check_probabilities(gamma: torch.Tensor, name: str = "gamma") -> torch.Tensor:
    check_tensor(gamma, name, "(B, D)")
    if gamma.numel() and ((gamma < 0) | (gamma > 1)).any():
        raise InputError(f"{name} are probabilities and must lie in [0, 1]")
    return gamma


def spike_slab_kl(mu: torch.Tensor, logvar: torch.Tensor, gamma: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-sample KL of the spike-and-slab posterior from the spike-and-slab prior (Tonolini et al., Eq. 6).

    Posterior per latent dimension ``j``: ``q(z_j) = gamma_j N(mu_j, sigma_j^2) + (1 - gamma_j) delta(0)``;
    prior: ``p(z_j) = alpha N(0, 1) + (1 - alpha) delta(0)``. With ``log sigma_j^2 = logvar_j``::

        KL = sum_j [ -gamma_j / 2 (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
                     + (1 - gamma_j) log((1 - gamma_j) / (1 - alpha))
                     + gamma_j log(gamma_j / alpha) ]

    The first term is the Gaussian (slab) KL weighted by the spike probability, the other two the
    KL between Bernoulli(gamma_j) and Bernoulli(alpha). ``mu``, ``logvar``, ``gamma`` are ``(B, D)``;
    ``0 < alpha < 1``. Returns ``(B,)``: the sum over dimensions of each sample.
    """
    check_tensor(mu, "mu", "(B, D)")
    check_tensor(logvar, "logvar", "(B, D)")
    _check_probabilities(gamma)
    if mu.shape != logvar.shape or mu.shape != gamma.shape:
        raise InputError(f"mu, logvar and gamma must have one shape, got {tuple(mu.shape)}, "
                         f"{tuple(logvar.shape)}, {tuple(gamma.shape)}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise InputError(f"alpha (the prior's spike probability) must be in (0, 1), got {alpha!r}")
    g = gamma.clamp(EPS, 1 - EPS)
    slab = -0.5 * g * (1 + logvar - mu.square() - logvar.exp())
    spike = (1 - g) * torch.log((1 - g) / (1 - alpha)) + g * torch.log(g / alpha)
    return (slab + spike).sum(dim=1)


def _bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    """``H(p) = -p log p - (1 - p) log(1 - p)`` elementwise, on probabilities clamped to ``[EPS, 1 - EPS]``."""
    p = p.clamp(EPS, 1 - EPS)
    return -(p * p.log() + (1 - p) * torch.log1p(-p))


def bernoulli_jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between rows of independent Bernoulli probabilities ``p, q (B, D)``.

    Per dimension, ``JSD(p_j, q_j) = H((p_j + q_j) / 2) - (H(p_j) + H(q_j)) / 2`` with the Bernoulli
    entropy ``H(p) = -p log p - (1 - p) log(1 - p)``; the divergence of two vectors is the sum over
    their ``D`` dimensions (each in ``[0, log 2]``), i.e. the dimensions' divergences added as for
    independent factors. Returns ``(B,)``.
    """
    _check_probabilities(p, "p")
    _check_probabilities(q, "q")
    if p.shape != q.shape:
        raise InputError(f"p and q must have one shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return (_bernoulli_entropy((p + q) / 2) - (_bernoulli_entropy(p) + _bernoulli_entropy(q)) / 2).sum(dim=1)


def pairwise_bernoulli_jsd(p: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
    """All-pairs :func:`bernoulli_jsd`: ``out[i, k] = JSD(p_i, q_k)`` for ``p (N, D)``, ``q (M, D)``
    (``q`` defaults to ``p``). Returns ``(N, M)``; memory ``N * M * D``."""
    _check_probabilities(p, "p")
    q = p if q is None else _check_probabilities(q, "q")
    if p.shape[1] != q.shape[1]:
        raise InputError(f"p and q must have the same number of dimensions, got {p.shape[1]} and {q.shape[1]}")
    mixed = _bernoulli_entropy((p[:, None, :] + q[None, :, :]) / 2).sum(dim=2)
    return mixed - (_bernoulli_entropy(p).sum(dim=1)[:, None] + _bernoulli_entropy(q).sum(dim=1)[None, :]) / 2


def mean_pairwise_jsd(gamma: torch.Tensor) -> torch.Tensor:
    """Mean of ``JSD(gamma_i, gamma_k)`` over the ``n (n - 1) / 2`` pairs ``i < k`` of the rows of
    ``gamma (n, D)``, ``n >= 2`` (the diagonal, always 0, is left out). Returns a scalar."""
    n = _check_probabilities(gamma).shape[0]
    if n < 2:
        raise InputError(f"the mean pairwise JSD needs at least 2 rows, got {n}")
    return pairwise_bernoulli_jsd(gamma).sum() / (n * (n - 1))


def class_alignment_loss(gamma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-alignment loss (arXiv 2505.14476): the mean over classes of the mean pairwise JSD
    between the spike probabilities of same-class samples,

    ``L_JSD = 1/|C| sum_{c in C} 2 / (n_c (n_c - 1)) sum_{i < k, y_i = y_k = c} JSD(gamma_i, gamma_k)``,

    where ``C`` are the classes with ``n_c >= 2`` samples in the batch and JSD is
    :func:`bernoulli_jsd` (summed over dimensions). ``gamma (B, D)`` in ``[0, 1]``, integer
    ``labels (B,)``. Raises :class:`InputError` when no class has two samples (no pair to align).
    """
    _check_probabilities(gamma)
    if (not isinstance(labels, torch.Tensor) or labels.shape != (gamma.shape[0],) or labels.is_floating_point()
            or labels.is_complex() or labels.dtype == torch.bool):
        got = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise InputError(f"labels must be integer class indices of shape ({gamma.shape[0]},), got {got}")
    classes, counts = labels.unique(return_counts=True)
    paired = classes[counts >= 2]
    if len(paired) == 0:
        raise InputError("class alignment needs at least two samples of one class in the batch; none has a pair")
    return torch.stack([mean_pairwise_jsd(gamma[labels == c]) for c in paired]).mean()

