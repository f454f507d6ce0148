"""Dictionaries on activations: one module per fitted dictionary, its engine from ``overcomplete``.

Every method learns ``atoms`` ``D (N, C)`` and codes ``z (P, N)`` with ``x ≈ z D`` for activations
``x (P, C)``, standardised first: ``x~ = (x - mu) / s`` with ``mu`` the training mean and ``s`` the
root mean squared norm of ``x - mu`` (so ``E ||x~||^2 = 1``; overcomplete's SAEs have no decoder
bias, and FVU is unchanged by this map). The mean L0 (non-zero codes per sample) is ``k`` for
every method, enforced as each method allows:

- ``topk`` (Gao et al., arXiv 2406.04093, the TopK activation): ``z = TopK(ReLU(W x~ + b))``, ``k`` per sample;
  trained on ``||x~ - z D||^2`` plus overcomplete's auxiliary top-k loss (dead-atom revival);
- ``batchtopk`` (Bussmann et al., arXiv 2412.06410): the top ``k * B`` codes of a batch of ``B``;
  at inference a running threshold; mean L0 ``k`` on average, not per sample;
- ``matryoshka`` (Bussmann et al., arXiv 2503.17547, the Matryoshka loss): BatchTopK codes, trained so
  that nested prefixes of the atoms (``N/16, N/8, N/4, N/2, N``) each reconstruct ``x~`` on their own;
- ``jumprelu`` (Rajamanoharan et al., arXiv 2407.14435, the JumpReLU SAE and its L0 loss):
  ``z = ReLU(W x~ + b) * H(. - θ)``,
  trained on ``||x~ - z D||^2 + λ L0`` with the straight-through L0 estimate; ``λ`` is steered after
  every step, ``λ <- λ exp(0.05 clip(L0 / k - 1, -1, 1))``, so that the mean L0 settles near ``k``;
  then every threshold is multiplied by one factor that makes the training samples' mean L0 ``k``;
- ``mp`` (Costa et al., arXiv 2506.03093, the MP encoder): ``k`` greedy matching-pursuit steps against
  unit-norm atoms, ``r <- r - <r, d_j> d_j`` with ``j = argmax_j <r, d_j>``;
- ``snmf`` (Shafran et al., arXiv 2506.10920, the SNMF objective): ``x~ ≈ z D`` with ``z >= 0`` by multiplicative
  updates, then the ``k`` largest codes per sample kept;
- ``pca``, ``ica``: the linear codes ``(x~ - m) W^T`` of sklearn's PCA / FastICA, the ``k`` largest in
  absolute value kept, reconstruction ``z D + m`` (``D`` the components / the mixing matrix);
- ``kmeans``: one-hot code of the nearest centre (L0 = 1 by construction, so ``k`` must be 1).

PCA and ICA codes are signed (an atom and its negation are one atom): grading scores them both ways.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..checks import check_int
from ..errors import InputError, SparsexError
from . import engine

METHODS = ("topk", "batchtopk", "matryoshka", "jumprelu", "mp", "snmf", "pca", "ica", "kmeans")
SAE_METHODS = ("topk", "batchtopk", "matryoshka", "jumprelu", "mp")
SIGNED_METHODS = ("pca", "ica")
MAX_ATOMS = 1 << 16
SNMF_FIT_ITERATIONS, SNMF_ENCODE_ITERATIONS = 200, 100


def check_method(method: str, atoms: int, k: int, channels: int | None = None) -> None:
    """One-line :class:`~sparsex.errors.SparsexError` for an unknown method, or atoms / k out of range
    (``channels``: the activations' width, which bounds PCA and ICA)."""
    if method not in METHODS:
        raise SparsexError(f"unknown dictionary method {method!r}; valid: {', '.join(METHODS)}")
    check_int(atoms, "atoms", 1, MAX_ATOMS)
    check_int(k, "k", 1, atoms)
    if method == "kmeans" and k != 1:
        raise SparsexError(f"kmeans codes each sample by its nearest centre (L0 = 1): k must be 1, got {k}")
    if method in SIGNED_METHODS and channels is not None and atoms > channels:
        raise SparsexError(f"{method} gives at most as many atoms as the activations have channels ({channels}), "
                           f"got atoms={atoms}")


def check_finite(activations: torch.Tensor, what: str) -> None:
    """Refuse NaN or infinite activations with one line saying how many."""
    bad = int((~torch.isfinite(activations)).sum())
    if bad:
        raise InputError(f"{what} hold {bad} NaN or infinite activation values; a dictionary needs finite activations "
                         f"(check the backbone, its weights and --feature-dtype)")


def keep_top(codes: torch.Tensor, k: int, by_magnitude: bool) -> torch.Tensor:
    """Zero all but the ``k`` largest codes of every row (largest in absolute value: ``by_magnitude``)."""
    if k >= codes.shape[1]:
        return codes
    index = (codes.abs() if by_magnitude else codes).topk(k, dim=1).indices
    return torch.zeros_like(codes).scatter(1, index, codes.gather(1, index))


class Dictionary(nn.Module):
    """A fitted dictionary of ``atoms`` atoms over ``channels``-dimensional activations, ``k`` codes
    per sample. ``encode(x)`` / ``decode(z)`` work on raw activations ``(P, C)`` and codes ``(P, N)``;
    the state dict holds everything (safetensors checkpoints)."""

    def __init__(self, method: str, channels: int, atoms: int, k: int) -> None:
        super().__init__()
        check_method(method, atoms, k, channels)
        self.method, self.channels, self.num_atoms, self.k = method, channels, atoms, k
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("scale", torch.ones(()))
        if method in SAE_METHODS:
            self.sae = engine.create_sae(method, channels, atoms, k)
            if method in engine.BATCH_TOPK_METHODS:
                self.register_buffer("threshold", torch.zeros(()))
        else:
            self.register_buffer("atoms", torch.zeros(atoms, channels))
            if method in SIGNED_METHODS:
                self.register_buffer("encoder", torch.zeros(atoms, channels))
                self.register_buffer("offset", torch.zeros(channels))

    @property
    def signed(self) -> bool:
        return self.method in SIGNED_METHODS

    def config(self) -> dict[str, Any]:
        return {"method": self.method, "channels": self.channels, "atoms": self.num_atoms, "k": self.k}

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def dictionary(self) -> torch.Tensor:
        """The atoms ``D (N, C)`` in standardised units."""
        return self.sae.get_dictionary().detach() if self.method in SAE_METHODS else self.atoms

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``z (P, N)`` of raw activations ``x (P, C)``."""
        if x.dim() != 2 or x.shape[1] != self.channels:
            raise InputError(f"dictionary takes activations (P, {self.channels}), got {tuple(x.shape)}")
        check_finite(x, "the activations to encode")
        xs = self.standardize(x.to(self.mean))
        if self.method in SAE_METHODS:
            if self.method in engine.BATCH_TOPK_METHODS:
                self.sae.running_threshold = self.threshold
            self.sae.eval()
            return self.sae.encode(xs)[1]
        if self.method == "snmf":
            return keep_top(engine.snmf_codes(xs, self.atoms, SNMF_ENCODE_ITERATIONS), self.k, by_magnitude=False)
        if self.method == "kmeans":
            nearest = torch.cdist(xs, self.atoms).argmin(dim=1)
            return nn.functional.one_hot(nearest, self.num_atoms).to(xs.dtype)
        return keep_top((xs - self.offset) @ self.encoder.T, self.k, by_magnitude=True)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``z D`` (plus the linear methods' offset) in standardised units."""
        recon = codes @ self.dictionary()
        return recon + self.offset if self.signed else recon

    def fit(self, x: torch.Tensor, epochs: int, lr: float, batch_size: int, seed: int,
            device: str | torch.device = "cpu") -> dict[str, Any]:
        """Fit to raw activations ``x (P, C)`` (deterministic given ``seed``); returns training numbers."""
        check_finite(x, "the training activations")
        if x.shape[0] < 2:
            raise InputError(f"a dictionary needs at least 2 training samples, got {x.shape[0]}")
        if self.method == "kmeans" and x.shape[0] < self.num_atoms:
            raise SparsexError(f"kmeans needs at least as many samples as atoms: {x.shape[0]} < {self.num_atoms}")
        self.mean.copy_(x.mean(0))
        self.scale.copy_((x - self.mean).square().sum(1).mean().sqrt().clamp_min(1e-12))
        xs = self.standardize(x)
        torch.manual_seed(seed)
        if self.method in SAE_METHODS:
            self.sae = engine.create_sae(self.method, self.channels, self.num_atoms, self.k)  # initialised from seed
            info = engine.train(self.sae, self.method, xs, self.k, epochs, lr, batch_size, seed, device)
            if self.method in engine.BATCH_TOPK_METHODS:
                self.threshold.copy_(self.sae.running_threshold)
            self.sae.to("cpu").eval()
            return info
        if self.method == "snmf":
            self.atoms.copy_(engine.fit_snmf(xs, self.num_atoms, SNMF_FIT_ITERATIONS, device))
        elif self.method == "kmeans":
            self.atoms.copy_(engine.fit_kmeans(xs, self.num_atoms, seed))
        else:
            encoder, atoms, offset = engine.fit_linear(self.method, xs, self.num_atoms, seed)
            self.encoder.copy_(encoder)
            self.atoms.copy_(atoms)
            self.offset.copy_(offset)
        return {}


def fit_dictionary(method: str, activations: torch.Tensor, atoms: int, k: int, *, epochs: int = 20, lr: float = 1e-3,
                   batch_size: int = 256, seed: int = 0, device: str | torch.device = "cpu") -> Dictionary:
    """A :class:`Dictionary` of ``method`` fitted to ``activations (P, C)``."""
    dictionary = Dictionary(method, activations.shape[1], atoms, k)
    dictionary.fit(activations, epochs, lr, batch_size, seed, device)
    return dictionary


def patches(features: torch.Tensor, pooled: bool = False) -> torch.Tensor:
    """Samples of cached features ``(N, C, h, w)``: one row per spatial cell, image-major
    ``(N * h * w, C)``, or one per image (the spatial mean) when ``pooled``."""
    if features.dim() != 4:
        raise InputError(f"cached features must be (N, C, h, w), got {tuple(features.shape)}")
    if pooled:
        return features.float().mean(dim=(2, 3))
    return features.float().permute(0, 2, 3, 1).reshape(-1, features.shape[1])

