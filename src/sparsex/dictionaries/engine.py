"""The ``overcomplete`` engine (https://github.com/KempnerInstitute/overcomplete, 0.3.0) behind
:class:`~sparsex.dictionaries.Dictionary`: its SAEs and ``train_sae`` loop, its Semi-NMF solver and
its sklearn wrappers. What sparsex adds or works around here, and why:

- ``import overcomplete`` fails on matplotlib >= 3.9 (its colour maps call the removed
  ``matplotlib.cm.get_cmap`` at import time); the import lends it that name for the duration.
- ``BatchTopKSAE``'s ``top_k`` counts codes per *batch* (``k * B`` for a mean L0 of ``k``), and its
  running threshold is a plain attribute, not in the state dict: the caller stores it.
- It has no Matryoshka SAE: ``matryoshka`` is its ``BatchTopKSAE`` trained on the Matryoshka loss
  written here (:func:`matryoshka_ends`, the criterion in :func:`train`).
- ``JumpSAE`` ships no sparsity loss: the L0 term is written here with its ``heaviside``
  straight-through estimate, with a weight steered to the target L0, and the thresholds are
  rescaled after training so that the mean L0 on the training samples is exactly ``k``.
- ``SemiNMF.encode`` starts from the global random stream: encoding is seeded here so that the
  same activations always get the same codes.
- ``SkKMeans.encode`` returns distances to every centre and ``decode`` multiplies them with the
  centres, which is no reconstruction: only its fitted centres are used (codes are one-hot).
- The sklearn-wrapped models pickle, which checkpoints do not: their fitted matrices are kept.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch

from ..errors import SparsexError

JUMP_STEER_RATE = 0.05  # η of λ <- λ exp(η clip(L0 / k - 1, -1, 1)), once per step
JUMP_START_WEIGHT = 1e-3  # λ at the first step (the reconstruction term starts near 1)
TOPK_AUX_WEIGHT = 1 / 32  # weight of the auxiliary top-k loss (Gao et al., arXiv 2406.04093, use 1/32)
# Matryoshka group sizes as fractions of the dictionary (Bussmann et al.'s public main.py: N/16, N/16, N/8, N/4, N/2)
MATRYOSHKA_GROUPS = (1 / 16, 1 / 16, 1 / 8, 1 / 4, 1 / 2)
BATCH_TOPK_METHODS = ("batchtopk", "matryoshka")  # overcomplete's BatchTopKSAE: top k B per batch, running threshold


@contextlib.contextmanager
def _matplotlib_get_cmap() -> Iterator[None]:
    import matplotlib
    import matplotlib.cm

    missing = not hasattr(matplotlib.cm, "get_cmap")
    if missing:
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    try:
        yield
    finally:
        if missing:
            del matplotlib.cm.get_cmap


def _overcomplete() -> Any:
    with _matplotlib_get_cmap():
        import overcomplete
    return overcomplete


def create_sae(method: str, channels: int, atoms: int, k: int) -> torch.nn.Module:
    """overcomplete's SAE of ``method`` (its default linear encoder, unit-norm atoms)."""
    sae = _overcomplete().sae
    if method == "topk":
        return sae.TopKSAE(channels, atoms, top_k=k)
    if method in BATCH_TOPK_METHODS:
        return sae.BatchTopKSAE(channels, atoms, top_k=k)
    if method == "jumprelu":
        return sae.JumpSAE(channels, atoms)
    return sae.MpSAE(channels, atoms, k=k)


def matryoshka_ends(atoms: int) -> list[int]:
    """The nested prefixes' ends ``m_1 < ... < m_G = atoms`` of a Matryoshka dictionary: cumulative
    :data:`MATRYOSHKA_GROUPS` (each group at least one atom; repeated ends merged)."""
    ends, total = [], 0.0
    for fraction in MATRYOSHKA_GROUPS[:-1]:
        total += fraction
        end = max(1, round(total * atoms), ends[-1] + 1 if ends else 1)
        if end < atoms:
            ends.append(end)
    return ends + [atoms]


def matryoshka_loss(x: torch.Tensor, codes: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    """Mean reconstruction error of the nested prefixes (Bussmann et al., arXiv 2503.17547; their public sae.py)::

        L = 1/G sum_{g=1..G} mean ||x~ - z[:, :m_g] D[:m_g]||^2

    the first ``m_g`` atoms alone must reconstruct ``x~``, so general concepts are learnt by the early
    atoms instead of being absorbed into the specific ones. The public code also averages in
    ``||x - b_dec||^2``; overcomplete's SAEs have no decoder bias, so that term is a constant here."""
    errors = [(x - codes[:, :end] @ dictionary[:end]).square().mean() for end in matryoshka_ends(dictionary.shape[0])]
    return torch.stack(errors).mean()


def _on_device(sae: torch.nn.Module, device: str | torch.device) -> None:
    """Move an overcomplete SAE, whose ``device`` attributes tell where it creates its tensors."""
    sae.to(device)
    for module in sae.modules():
        if hasattr(module, "device"):
            module.device = device


class _Batches:
    """Shuffled full batches of ``xs`` (a new order every pass, from ``seed``): ``train_sae``'s data,
    sliced from the tensor instead of collated sample by sample."""

    def __init__(self, xs: torch.Tensor, batch: int, seed: int) -> None:
        self.xs, self.batch, self.generator = xs, batch, torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.xs.shape[0], generator=self.generator)
        for start in range(0, self.xs.shape[0] - self.batch + 1, self.batch):
            yield self.xs[order[start:start + self.batch]]


def train(sae: torch.nn.Module, method: str, xs: torch.Tensor, k: int, epochs: int, lr: float, batch_size: int, seed: int,
          device: str | torch.device) -> dict[str, Any]:
    """Train ``sae`` on standardised samples ``xs (P, C)`` with overcomplete's ``train_sae`` (Adam,
    gradient clipping at 1); returns the last step's loss (and for JumpReLU the final L0 weight)."""
    oc = _overcomplete()
    batch = min(batch_size, xs.shape[0])
    loader = _Batches(xs, batch, seed)
    state = {"loss": math.nan, "weight": JUMP_START_WEIGHT}
    if method in BATCH_TOPK_METHODS:
        sae.top_k = k * batch

    def criterion(x, x_hat, pre_codes, codes, dictionary):
        if method in ("topk", *BATCH_TOPK_METHODS):
            loss = oc.sae.losses.top_k_auxiliary_loss(x, x_hat, pre_codes, codes, dictionary, penalty=TOPK_AUX_WEIGHT)
            if method == "matryoshka":  # the whole dictionary's error replaced by the prefixes' mean; the auxiliary term kept
                loss = loss - (x - x_hat).square().mean() + matryoshka_loss(x, codes, dictionary)
        else:
            loss = (x - x_hat).square().sum(1).mean()
        if method == "jumprelu":
            active = oc.sae.heaviside(torch.relu(pre_codes), torch.exp(sae.thresholds), sae.kernel_fn, sae.bandwidth)
            loss = loss + state["weight"] * active.sum(1).mean()
            l0 = (codes > 0).sum(1).float().mean().item()
            state["weight"] *= math.exp(JUMP_STEER_RATE * max(-1.0, min(1.0, l0 / k - 1)))
        state["loss"] = loss.item()
        return loss

    _on_device(sae, device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    oc.sae.train_sae(sae, loader, criterion, optimizer, nb_epochs=epochs, clip_grad=1.0, monitoring=0, device=device)
    _on_device(sae, "cpu")
    if not math.isfinite(state["loss"]) or not all(torch.isfinite(t).all() for t in sae.state_dict().values()):
        raise SparsexError(f"the {method} fit diverged: its loss or weights became NaN or infinite (lr {lr}, "
                           f"{epochs} epochs); try a lower --lr")
    info = {"train_loss": state["loss"]}
    if method == "jumprelu":
        info["l0_weight"] = state["weight"]
        info["threshold_scale"], reached = calibrate_thresholds(sae, xs, k)
        if reached < k / 2:  # no threshold brings a silent encoder to the mean L0 it is held at
            raise SparsexError(f"the jumprelu fit reaches a mean L0 of {reached:.2f}, not the {k} asked, at any "
                               f"threshold: its encoder is silent on most samples (lr {lr}); try a lower --lr")
    return info


@torch.no_grad()
def calibrate_thresholds(sae: torch.nn.Module, xs: torch.Tensor, k: int, steps: int = 40) -> tuple[float, float]:
    """Scale a JumpReLU SAE's thresholds by one factor ``c`` so that its mean L0 on ``xs`` is ``k``
    (bisection on ``log c``; the steered L0 weight gets near ``k``, this makes it equal); returns ``c``
    and the mean L0 reached (below ``k`` only when even the smallest ``c`` cannot reach it)."""
    pre_codes = torch.relu(sae.encoder(xs)[0])
    thresholds = torch.exp(sae.thresholds)
    low, high = -12.0, 12.0
    for _ in range(steps):
        middle = (low + high) / 2
        l0 = (pre_codes > thresholds * math.exp(middle)).sum(1).double().mean().item()
        low, high = (middle, high) if l0 > k else (low, middle)
    sae.thresholds += high
    return math.exp(high), (pre_codes > thresholds * math.exp(high)).sum(1).double().mean().item()


def fit_snmf(xs: torch.Tensor, atoms: int, iterations: int, device: str | torch.device) -> torch.Tensor:
    """Semi-NMF atoms ``D (N, C)`` of ``xs ≈ z D``, ``z >= 0`` (multiplicative updates)."""
    model = _overcomplete().SemiNMF(atoms, solver="mu", device=device)
    model.fit(xs.to(device), max_iter=iterations)
    return model.get_dictionary().detach().cpu()


def snmf_codes(xs: torch.Tensor, atoms: torch.Tensor, iterations: int) -> torch.Tensor:
    """Non-negative codes of ``xs`` against fixed Semi-NMF atoms, from a seeded start."""
    model = _overcomplete().SemiNMF(atoms.shape[0], solver="mu")
    model.D = atoms
    model._set_fitted()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return model.encode(xs, max_iter=iterations)


def fit_kmeans(xs: torch.Tensor, atoms: int, seed: int) -> torch.Tensor:
    """k-means centres ``(N, C)`` (sklearn through overcomplete's ``SkKMeans``)."""
    model = _overcomplete().SkKMeans(atoms, random_state=seed, n_init=3)
    model.fit(xs)
    return model.get_dictionary().cpu()


def fit_linear(method: str, xs: torch.Tensor, atoms: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA or FastICA (sklearn through overcomplete): ``(encoder W, atoms D, offset m)`` with codes
    ``(x - m) W^T`` and reconstruction ``z D + m``."""
    oc = _overcomplete()
    if method == "pca":
        model = oc.SkPCA(atoms, random_state=seed)
        model.fit(xs)
        components = torch.as_tensor(model.model.components_, dtype=torch.float32)
        return components, components, torch.as_tensor(model.model.mean_, dtype=torch.float32)
    model = oc.SkICA(atoms, random_state=seed, whiten="unit-variance", max_iter=500)
    model.fit(xs)
    fitted = model.model
    return (torch.as_tensor(fitted.components_, dtype=torch.float32), torch.as_tensor(fitted.mixing_.T, dtype=torch.float32),
            torch.as_tensor(fitted.mean_, dtype=torch.float32))
