"""Metrics of sparse latent models, exactly as docs/metrics.md ("Sparse latents") states them.

Notation: spike probabilities ``gamma (N, D)`` in ``[0, 1]`` (the probability that each of the
``D`` latent dimensions is active for each of ``N`` samples), true labels ``(N,)`` of ``K``
classes. A dimension is *active* for a sample where ``gamma > 0.5``.

- :func:`active_dims`: mean number of active dimensions per sample;
- :func:`within_class_jsd`: mean over classes of the mean pairwise Jensen-Shannon divergence
  between the gamma vectors of same-class samples (:func:`sparsex.losses.bernoulli_jsd`);
- :func:`class_mean_gamma` and :func:`class_correlation`: the Pearson correlation between
  class-mean gamma vectors; :func:`group_correlation` summarises it for a group of classes;
- :func:`classify_dimensions`: global / class-specific / unused dimensions;
- :func:`linear_probe_accuracy`: test accuracy of a logistic regression trained on gamma.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..checks import check_int, check_number, check_tensor
from ..errors import InputError
from ..losses.vsc import bernoulli_jsd, pairwise_bernoulli_jsd
from .base import Metric, _check_labels, _check_threshold

#: docs/metrics.md: a dimension is active for a sample where its spike probability exceeds this.
ACTIVE_THRESHOLD = 0.5


def _check_gamma(gamma: torch.Tensor) -> torch.Tensor:
    check_tensor(gamma, "gamma", "(N, D)", nonempty=True)
    if ((gamma < 0) | (gamma > 1)).any():
        raise InputError("gamma are spike probabilities and must lie in [0, 1]")
    return gamma


def _names(names: Any, what: str) -> list[str]:
    """Class names: a list or tuple of strings (not one string)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{what} must be a list of class names, got {names!r}")
    return list(names)


def active_dims(gamma: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> float:
    """Mean over samples of ``#{j : gamma[n, j] > threshold}``. ``gamma (N, D)``; returns a float in ``[0, D]``."""
    _check_gamma(gamma)
    return (gamma > _check_threshold(threshold)).sum(dim=1).double().mean().item()


def _any_labels(labels: torch.Tensor, name: str, n: int) -> torch.Tensor:
    """Non-negative integer labels ``(n,)`` (any number of classes)."""
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"{name} must have an integer dtype, got {labels.dtype}")
    return _check_labels(labels, name, n, int(labels.max().item()) + 1 if labels.numel() else 1)


def within_class_jsd(gamma: torch.Tensor, labels: torch.Tensor, max_pairs: int | None = 20_000, seed: int = 0) -> float:
    """Mean over classes of the mean pairwise JSD between same-class gamma vectors:

    ``1/|C| sum_{c in C} 2 / (n_c (n_c - 1)) sum_{i < k, y_i = y_k = c} JSD(gamma_i, gamma_k)``

    with JSD the Bernoulli Jensen-Shannon divergence summed over dimensions (nats, at most
    ``D log 2``, :func:`sparsex.losses.bernoulli_jsd`) and ``C`` the classes with at least 2 samples.
    A class with more than ``max_pairs`` pairs is measured on ``max_pairs`` pairs ``i != k`` drawn
    uniformly (with replacement, from ``seed``): an unbiased estimate (its relative standard error is
    well under 1% at the default 20000 pairs); ``max_pairs=None`` takes all pairs (quadratic cost).
    ``gamma (N, D)``, labels ``(N,)``. Returns a float in ``[0, D log 2]``.
    """
    _check_gamma(gamma)
    _any_labels(labels, "labels", gamma.shape[0])
    max_pairs = check_int(max_pairs, "max_pairs", 1, none_ok=True)
    generator = torch.Generator().manual_seed(check_int(seed, "seed"))
    means = []
    with torch.no_grad():
        for c in labels.unique().tolist():
            g = gamma[labels == c]
            n = g.shape[0]
            if n < 2:
                continue
            if max_pairs is None or n * (n - 1) // 2 <= max_pairs:
                means.append(pairwise_bernoulli_jsd(g).double().sum().item() / (n * (n - 1)))
                continue
            first = torch.randint(n, (max_pairs,), generator=generator)
            second = (first + torch.randint(1, n, (max_pairs,), generator=generator)) % n  # uniform over k != i
            means.append(bernoulli_jsd(g[first], g[second]).double().mean().item())
    if not means:
        raise InputError("within-class JSD needs a class with at least 2 samples")
    return float(np.mean(means))


def class_mean_gamma(gamma: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean gamma vector of each class, ``(K, D)``; a class without samples gets a row of NaN."""
    _check_gamma(gamma)
    num_classes = check_int(num_classes, "num_classes", 1)
    _check_labels(labels, "labels", gamma.shape[0], num_classes)
    out = torch.full((num_classes, gamma.shape[1]), float("nan"), dtype=gamma.dtype, device=gamma.device)
    for c in range(num_classes):
        if (labels == c).any():
            out[c] = gamma[labels == c].mean(dim=0)
    return out


def class_correlation(class_means: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between the rows of ``class_means (K, D)`` (each row centred over its ``D``
    dimensions): ``r[a, b] = cov(m_a, m_b) / (std(m_a) std(m_b))``, ``(K, K)``. A row that is
    constant (or NaN) has no defined correlation: its entries are NaN, except 1 on the diagonal."""
    check_tensor(class_means, "class_means", "(K, D)", nonempty=True, allow_nan=True)
    m = class_means.double()
    centred = m - m.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1)
    corr = (centred @ centred.T) / (norms[:, None] * norms[None, :])
    corr[~torch.isfinite(corr)] = float("nan")
    corr.fill_diagonal_(1.0)
    return corr.to(class_means.dtype)


def group_correlation(corr: torch.Tensor | Sequence[Sequence[float]], classes: Sequence[str],
                      group: Sequence[str]) -> dict[str, float]:
    """Summarise a class correlation matrix for ``group`` (class names, e.g. the footwear classes):
    ``within`` is the mean correlation over pairs inside the group, ``across`` the mean over pairs
    with one class inside and one outside. NaN entries are left out of the means."""
    classes, group = _names(classes, "classes"), _names(group, "group")
    if isinstance(corr, torch.Tensor) and (corr.is_complex() or corr.dtype == torch.bool):
        raise InputError(f"corr must be a real (K, K) matrix, got dtype {corr.dtype}")
    try:
        corr = torch.as_tensor(corr, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"corr must be a (K, K) matrix of numbers, got {type(corr).__name__}") from None
    if tuple(corr.shape) != (len(classes), len(classes)):
        raise InputError(f"corr must have shape ({len(classes)}, {len(classes)}) for the {len(classes)} classes, "
                         f"got {tuple(corr.shape)}")
    check_tensor(corr, "corr", "(K, K)", allow_nan=True)
    missing = [g for g in group if g not in classes]
    if missing:
        raise InputError(f"classes {', '.join(map(repr, missing))} are not among {', '.join(classes)}")
    inside = [classes.index(g) for g in group]
    outside = [i for i in range(len(classes)) if i not in inside]
    if len(inside) < 2 or not outside:
        raise InputError(f"a group needs at least 2 classes and at least 1 class outside it, got {len(inside)} of {len(classes)}")
    within = [corr[a, b].item() for n, a in enumerate(inside) for b in inside[n + 1:]]
    across = [corr[a, b].item() for a in inside for b in outside]
    return {"within": float(np.nanmean(within)), "across": float(np.nanmean(across))}


def classify_dimensions(class_means: torch.Tensor, classes: Sequence[str],
                        threshold: float = ACTIVE_THRESHOLD) -> list[dict[str, Any]]:
    """Sort each latent dimension into a kind from the class-mean spike probabilities ``(K, D)``:
    a dimension is active for class ``c`` where ``class_means[c, j] > threshold``; it is
    ``global`` when active for every class, ``unused`` when active for none, and
    ``class-specific`` otherwise (its classes named). Returns one dict per dimension:
    ``{"dim", "kind", "classes", "mean_gamma"}`` (``mean_gamma`` over classes)."""
    check_tensor(class_means, "class_means", "(K, D)", nonempty=True, allow_nan=True)
    classes = _names(classes, "classes")
    _check_threshold(threshold)
    if class_means.shape[0] != len(classes):
        raise InputError(f"class_means have {class_means.shape[0]} rows but {len(classes)} classes are named")
    rows = []
    for j in range(class_means.shape[1]):
        column = class_means[:, j]
        active = [classes[c] for c in range(len(classes)) if column[c] > threshold]
        kind = "global" if len(active) == len(classes) else "unused" if not active else "class-specific"
        rows.append({"dim": j, "kind": kind, "classes": active, "mean_gamma": round(float(column.nanmean()), 4)})
    return rows


def linear_probe_accuracy(train_gamma: torch.Tensor, train_labels: torch.Tensor, test_gamma: torch.Tensor,
                          test_labels: torch.Tensor, max_iter: int = 500, l2: float = 1.0) -> float:
    """Test accuracy of a linear probe on spike probabilities: a multinomial logistic regression
    (scikit-learn, lbfgs, L2 penalty with inverse strength ``C = 1 / l2``, deterministic) fitted on
    ``train_gamma (N, D)`` -> labels and applied to ``test_gamma (M, D)``. Returns the fraction of
    test samples whose predicted class is the label."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    max_iter = check_int(max_iter, "max_iter", 1)
    check_number(l2, "l2", 0, low_open=True)
    for g, y, split in ((train_gamma, train_labels, "train"), (test_gamma, test_labels, "test")):
        _check_gamma(g)
        _any_labels(y, f"{split} labels", g.shape[0])
    if train_gamma.shape[1] != test_gamma.shape[1]:
        raise InputError(f"train and test gamma have {train_gamma.shape[1]} and {test_gamma.shape[1]} dimensions")
    if len(train_labels.unique()) < 2:
        raise InputError("a linear probe needs at least 2 classes in the training labels")
    probe = LogisticRegression(C=1.0 / l2, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train_gamma.detach().double().cpu().numpy(), train_labels.cpu().numpy())
    predicted = probe.predict(test_gamma.detach().double().cpu().numpy())
    return float((predicted == test_labels.cpu().numpy()).mean())


@dataclass(frozen=True)
class ActiveDims(Metric):
    """:func:`active_dims` as a metric (lower is sparser)."""

    threshold: float = ACTIVE_THRESHOLD
    name: ClassVar[str] = "active_dims"

    def __call__(self, gamma: torch.Tensor) -> float:
        return active_dims(gamma, self.threshold)


@dataclass(frozen=True)
class WithinClassJSD(Metric):
    """:func:`within_class_jsd` as a metric (lower is better aligned)."""

    name: ClassVar[str] = "jsd_within"

    def __call__(self, gamma: torch.Tensor, labels: torch.Tensor) -> float:
        return within_class_jsd(gamma, labels)


@dataclass(frozen=True)
class ProbeAccuracy(Metric):
    """:func:`linear_probe_accuracy` as a metric (higher is better)."""

    max_iter: int = 500
    l2: float = 1.0
    name: ClassVar[str] = "probe_accuracy"

    def __call__(self, train_gamma: torch.Tensor, train_labels: torch.Tensor, test_gamma: torch.Tensor,
                 test_labels: torch.Tensor) -> float:
        return linear_probe_accuracy(train_gamma, train_labels, test_gamma, test_labels, self.max_iter, self.l2)


def latent_metrics(gamma: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                   train_gamma: torch.Tensor | None = None, train_labels: torch.Tensor | None = None,
                   jsd_pairs: int | None = 20_000, probe_max_iter: int = 500, seed: int = 0) -> dict[str, Any]:
    """The sparse-latent metrics (docs/metrics.md) of one test split's spike probabilities ``gamma (N, D)``:
    ``active_dims`` and ``jsd_within``; with ``train_gamma``/``train_labels`` also
    ``probe_accuracy``, the class ``correlation_matrix`` (K x K, NaN as ``None``), the ``classes``
    it is indexed by, and the number of ``global``/``class-specific``/``unused`` dimensions."""
    classes = _names(classes, "classes")
    if (train_gamma is None) != (train_labels is None):
        raise InputError("pass both train_gamma and train_labels (for the probe and the class analysis) or neither")
    out: dict[str, Any] = {"active_dims": active_dims(gamma), "jsd_within": within_class_jsd(gamma, labels, jsd_pairs, seed)}
    if train_gamma is None or train_labels is None:
        return out
    out["probe_accuracy"] = linear_probe_accuracy(train_gamma, train_labels, gamma, labels, probe_max_iter)
    means = class_mean_gamma(gamma, labels, len(classes))
    kinds = [row["kind"] for row in classify_dimensions(means, classes)]
    out.update({f"dims_{kind.replace('-', '_')}": kinds.count(kind) for kind in ("global", "class-specific", "unused")})
    out["classes"] = list(classes)
    out["correlation_matrix"] = nan_to_none(class_correlation(means))
    return out


def nan_to_none(matrix: torch.Tensor) -> list[list[float | None]]:
    """A matrix as nested lists for JSON, NaN as ``None`` (JSON has no NaN)."""
    return [[None if math.isnan(v) else round(v, 6) for v in row] for row in matrix.tolist()]
