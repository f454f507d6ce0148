"""Sparsity and calibration metrics of prototype models, as docs/metrics.md defines them (the
reference code's conventions and the differences: docs/references.md), batched in torch.

Notation: pooled prototype scores ``s (N, P)`` (non-negative for SIDE and ProtoS-ViT; signed
scores are measured literally too), effective class weights ``W (K, P)`` (after the model's
ReLU and pruning mask, e.g. ``SIDEHead.class_weights()``; signed weights are measured
literally), logits or probabilities ``(N, K)``, true labels ``(N,)``, and a threshold ``eps``
(default 1e-3). Thresholds are applied when measuring; nothing here mutates its inputs.

The sizes come in two definitions, and every printed key names its own (docs/metrics.md):

- **local size**: sparsex's ``local_size`` counts the contributions ``s_p W[yhat, p] > eps`` to the
  *predicted* class ``yhat``; ProtoS-ViT's (``local_size_true``; hturbe/protosvit,
  ``src/shared_utils/utils_experiments.py``, ``compute_model_stats``) counts the importances
  ``s_p W[y, p]`` of the *true* class ``y`` that survive its threshold: zeroed when ``< t``,
  counted when ``> 0`` (``t = 0.1`` in its notebooks);
- **global size**: sparsex's ``global_size`` counts the prototypes with ``max_c W[c, p] > eps``
  (rule ``"weights"``); ProtoS-ViT's (``global_size_used``, rule ``"used"``) counts those whose
  true-class importance survives the threshold on at least one test image.

Each metric exists as a plain function and as a Quantus-style class (settings at construction,
data at call, ``higher_is_better`` giving the score direction as :mod:`sparsex.metrics.registry`
states it); :func:`prototype_metrics` computes them all for one test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..checks import check_int, check_tensor
from ..errors import InputError
from .accuracy import accuracy_with_abstentions
from .base import Metric, _check_eps, _check_labels, _check_same_device, _check_threshold


def _check_num_prototypes(scores: torch.Tensor, weights: torch.Tensor) -> None:
    if scores.shape[1] != weights.shape[1]:
        raise InputError(
            f"scores have {scores.shape[1]} prototypes but weights have {weights.shape[1]}"
            f" (scores {tuple(scores.shape)}, weights {tuple(weights.shape)})"
        )


def _check_num_classes(outputs: torch.Tensor, name: str, weights: torch.Tensor) -> None:
    if outputs.shape[1] != weights.shape[0]:
        raise InputError(
            f"{name} have {outputs.shape[1]} classes but weights have {weights.shape[0]} (shape {tuple(weights.shape)})"
        )


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    check_tensor(probs, "probs", "(N, K)", nonempty=True)
    if ((probs < 0) | (probs > 1)).any():
        raise InputError("probs must lie in [0, 1]")
    return probs


#: Which class's importances a local size counts: the predicted one (sparsex) or the true one (ProtoS-ViT).
LOCAL_SIZE_TARGETS = ("predicted", "true")
#: Which prototypes a global size counts: those with a class weight (sparsex) or those used on a test image (ProtoS-ViT).
GLOBAL_SIZE_RULES = ("weights", "used")


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _surviving_importances(scores: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, threshold: float
                           ) -> torch.Tensor:
    """ProtoS-ViT's counted importances ``(N, P)`` bool: ``s[n, p] W[y_n, p]`` is zeroed when
    ``< threshold`` and counted when ``> 0`` (``compute_model_stats``: ``importance[importance <
    threshold] = 0``, then ``class_importance > 0``)."""
    importances = scores * weights[labels.long()]
    return (importances >= threshold) & (importances > 0)


@torch.no_grad()
def global_size(weights: torch.Tensor, eps: float = 1e-3, rule: str = "weights", scores: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> int:
    """Global size: the number of prototypes the model uses. Returns an ``int`` in ``[0, P]``.

    ``weights (K, P)`` effective class weights. ``rule="weights"`` (sparsex): ``#{p : max_c W[c, p]
    > eps}``. ``rule="used"`` (ProtoS-ViT, ``compute_model_stats``: ``((class_importance > 0).sum(0)
    > 0).sum()``): ``#{p : exists n, s[n, p] W[y_n, p] >= eps and > 0}`` over the test images'
    ``scores (N, P)`` and true ``labels (N,)``, both required for this rule.
    """
    check_tensor(weights, "weights", "(K, P)", nonempty=True)
    _check_eps(eps)
    _check_choice(rule, "global size rule", GLOBAL_SIZE_RULES)
    if rule == "weights":
        return int((weights.amax(dim=0) > eps).sum().item())
    if scores is None or labels is None:
        raise InputError("global size rule 'used' needs the test images' scores and labels")
    check_tensor(scores, "scores", "(N, P)", nonempty=True)
    _check_num_prototypes(scores, weights)
    _check_labels(labels, "labels", scores.shape[0], weights.shape[0])
    _check_same_device(scores=scores, weights=weights, labels=labels)
    return int(_surviving_importances(scores, weights, labels, eps).any(dim=0).sum().item())


@torch.no_grad()
def local_size(scores: torch.Tensor, weights: torch.Tensor, predicted: torch.Tensor | None = None, eps: float = 1e-3,
               target: str = "predicted", labels: torch.Tensor | None = None) -> torch.Tensor:
    """Local size per image: how many prototypes explain one class of it.

    ``target="predicted"`` (sparsex): ``#{p : s[p] W[yhat, p] > eps}`` for the ``predicted (N,)``
    class ``yhat``. ``target="true"`` (ProtoS-ViT, ``compute_model_stats``: ``(class_importance >
    0).sum(axis=1)`` after ``importance[importance < threshold] = 0``): ``#{p : s[p] W[y, p] >= eps
    and > 0}`` for the true ``labels (N,)`` ``y``. ``scores (N, P)``, ``weights (K, P)``. Returns
    an int64 tensor ``(N,)`` on the inputs' device; the reported metric is its mean.
    """
    check_tensor(scores, "scores", "(N, P)", nonempty=True)
    check_tensor(weights, "weights", "(K, P)", nonempty=True)
    _check_num_prototypes(scores, weights)
    _check_choice(target, "local size target", LOCAL_SIZE_TARGETS)
    classes, name, what = (predicted, "predicted", "predicted classes") if target == "predicted" else (
        labels, "labels", "true labels")
    if classes is None:
        raise InputError(f"local size target {target!r} needs {name}=, the {what}")
    _check_labels(classes, name, scores.shape[0], weights.shape[0])
    _check_same_device(scores=scores, weights=weights, **{name: classes})
    _check_eps(eps)
    if target == "true":
        return _surviving_importances(scores, weights, classes, eps).sum(dim=1)
    return (scores * weights[classes.long()] > eps).sum(dim=1)


@torch.no_grad()
def local_size_all_classes(scores: torch.Tensor, weights: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Local size over all classes per image: ``#{p : sum_c relu(s[p] * W[c, p] - eps) > 0}``.

    ``scores (N, P)``, ``weights (K, P)``. Returns an int64 tensor ``(N,)``; the reported metric
    is its mean. Computed without the ``(N, K, P)`` product: the condition holds iff
    ``max_c s[p] W[c, p] > eps``, and ``max_c s[p] W[c, p]`` is ``s[p] max_c W[c, p]`` for
    ``s[p] >= 0`` and ``s[p] min_c W[c, p]`` for ``s[p] < 0`` (exact in floating point, since
    rounding a product is monotone).
    """
    check_tensor(scores, "scores", "(N, P)", nonempty=True)
    check_tensor(weights, "weights", "(K, P)", nonempty=True)
    _check_num_prototypes(scores, weights)
    _check_same_device(scores=scores, weights=weights)
    _check_eps(eps)
    largest = torch.where(scores >= 0, scores * weights.amax(dim=0), scores * weights.amin(dim=0))
    return (largest > eps).sum(dim=1)


@torch.no_grad()
def ocla_score(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> float:
    """OCLA score: the fraction of images on which exactly one class has probability above
    ``t`` and that class is the true one.

    ``probs (N, K)`` per-class probabilities (sigmoid outputs), ``targets (N,)`` true labels.
    Returns a ``float`` in ``[0, 1]``.
    """
    _check_probs(probs)
    _check_labels(targets, "targets", *probs.shape)
    _check_same_device(probs=probs, targets=targets)
    _check_threshold(threshold)
    above = probs > threshold
    true_above = above.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    return ((above.sum(dim=1) == 1) & true_above).double().mean().item()


@torch.no_grad()
def ocla_shift(logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> tuple[float, float]:
    """The shift ``d`` of every logit that maximises the OCLA score of ``sigmoid(logits + d)``,
    and that score: ``(d, score)``.

    With ``tau = log(t / (1 - t))``, image ``b`` counts exactly when its true class ``y`` is above
    and every other class is not: ``d`` in ``(tau - z_by, tau - max_{k != y} z_bk]``, an interval
    that is empty unless ``y`` is the top class. The score is the number of intervals holding
    ``d``, over ``N``; it is constant between consecutive interval ends, and ``d`` is the middle of
    the best such stretch (the widest of equal ones; its ends are where single images flip, so
    the middle is the choice least moved by them). A shared shift moves no image's ranking of
    the classes: the predicted class and every contribution ``s_p W[c, p]`` stay as they are.
    With no image whose top class is the true one, ``(0.0, 0.0)``.

    ``logits (N, K)`` with ``K >= 2``, ``targets (N,)`` true labels.
    """
    check_tensor(logits, "logits", "(N, K)", nonempty=True)
    if logits.shape[1] < 2:
        raise InputError(f"logits need at least 2 classes for the OCLA score, got shape {tuple(logits.shape)}")
    _check_labels(targets, "targets", *logits.shape)
    _check_same_device(logits=logits, targets=targets)
    tau = math.log(_check_threshold(threshold) / (1 - threshold))
    z = logits.double()
    y = targets.long().unsqueeze(1)
    true = z.gather(1, y).squeeze(1)
    runner_up = z.scatter(1, y, float("-inf")).max(dim=1).values
    kept = true > runner_up
    if not kept.any():
        return 0.0, 0.0
    starts, ends = (tau - true[kept]).sort().values, (tau - runner_up[kept]).sort().values  # d in (start, end]
    edges = torch.cat([starts, ends]).unique()  # at least two: every start is below its end
    middles = (edges[1:] + edges[:-1]) / 2
    held = torch.searchsorted(starts, middles) - torch.searchsorted(ends, middles)  # starts < m minus ends < m
    widths = edges[1:] - edges[:-1]
    best = int(torch.where(held == held.max(), widths, -1.0).argmax())  # the widest of the best stretches
    return float(middles[best]), int(held[best]) / len(logits)


@torch.no_grad()
def classes_above_histogram(probs: torch.Tensor, threshold: float = 0.5, max_bins: int | None = None) -> list[int]:
    """Histogram of the number of classes with probability above ``t`` per image.

    ``probs (N, K)``. Entry ``i`` is the number of images with exactly ``i`` classes above
    ``t``; the list runs from 0 to the largest count seen. With ``max_bins = B`` the list has
    exactly ``B`` entries and the last one counts the images with ``B - 1`` or more classes
    above ``t``. The entries sum to ``N``.
    """
    _check_probs(probs)
    _check_threshold(threshold)
    check_int(max_bins, "max_bins", 1, none_ok=True)
    counts = (probs > threshold).sum(dim=1)
    if max_bins is not None:
        counts = counts.clamp(max=max_bins - 1)
    return torch.bincount(counts, minlength=max_bins or 0).tolist()


@torch.no_grad()
def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy: the fraction of images whose arg-max class equals the true label, an image
    whose logits all tie counting as wrong (an abstention:
    :func:`sparsex.metrics.accuracy.accuracy_with_abstentions`, the one definition).

    ``logits (N, K)`` (probabilities work too: the arg-max is the same), ``targets (N,)``.
    Returns a ``float`` in ``[0, 1]``.
    """
    return accuracy_with_abstentions(logits, targets)["accuracy"]


@torch.no_grad()
def zero_weight_fraction(weights: torch.Tensor, eps: float = 1e-3) -> float:
    """Fraction of the entries of the effective class weights with ``|W[c, p]| < eps``.

    ``weights (K, P)`` after the model's ReLU and pruning mask. With ``eps = 0`` no entry
    counts. Returns a ``float`` in ``[0, 1]``.
    """
    check_tensor(weights, "weights", "(K, P)", nonempty=True)
    _check_eps(eps)
    return (weights.abs() < eps).double().mean().item()


@dataclass(frozen=True)
class GlobalSize(Metric):
    """:func:`global_size` as a metric: ``GlobalSize(eps)(weights) -> float``."""

    eps: float = 1e-3
    name: ClassVar[str] = "global_size"

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def __call__(self, weights: torch.Tensor) -> float:
        return float(global_size(weights, self.eps))


@dataclass(frozen=True)
class LocalSize(Metric):
    """Mean :func:`local_size`: ``LocalSize(eps)(scores, weights, predicted) -> float``."""

    eps: float = 1e-3
    name: ClassVar[str] = "local_size"

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def __call__(self, scores: torch.Tensor, weights: torch.Tensor, predicted: torch.Tensor) -> float:
        return local_size(scores, weights, predicted, self.eps).double().mean().item()


@dataclass(frozen=True)
class LocalSizeAllClasses(Metric):
    """Mean :func:`local_size_all_classes`: ``LocalSizeAllClasses(eps)(scores, weights) -> float``."""

    eps: float = 1e-3
    name: ClassVar[str] = "local_size_all"

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def __call__(self, scores: torch.Tensor, weights: torch.Tensor) -> float:
        return local_size_all_classes(scores, weights, self.eps).double().mean().item()


@dataclass(frozen=True)
class LocalSizeTrueClass(Metric):
    """Mean :func:`local_size` of the true class (ProtoS-ViT's definition):
    ``LocalSizeTrueClass(eps)(scores, weights, labels) -> float``."""

    eps: float = 1e-3
    name: ClassVar[str] = "local_size_true"

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def __call__(self, scores: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor) -> float:
        return local_size(scores, weights, eps=self.eps, target="true", labels=labels).double().mean().item()


@dataclass(frozen=True)
class GlobalSizeUsed(Metric):
    """:func:`global_size` with rule ``"used"`` (ProtoS-ViT's definition):
    ``GlobalSizeUsed(eps)(scores, weights, labels) -> float``."""

    eps: float = 1e-3
    name: ClassVar[str] = "global_size_used"

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def __call__(self, scores: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor) -> float:
        return float(global_size(weights, self.eps, rule="used", scores=scores, labels=labels))


@dataclass(frozen=True)
class OCLAScore(Metric):
    """:func:`ocla_score` as a metric: ``OCLAScore(threshold)(probs, targets) -> float``."""

    threshold: float = 0.5
    name: ClassVar[str] = "ocla_score"

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)

    def __call__(self, probs: torch.Tensor, targets: torch.Tensor) -> float:
        return ocla_score(probs, targets, self.threshold)


@dataclass(frozen=True)
class Accuracy(Metric):
    """:func:`accuracy` as a metric: ``Accuracy()(logits, targets) -> float``."""

    name: ClassVar[str] = "accuracy"

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        return accuracy(logits, targets)


@dataclass(frozen=True)
class ZeroWeightFraction(Metric):
    """:func:`zero_weight_fraction` as a metric (higher is sparser):
    ``ZeroWeightFraction(eps)(weights) -> float``."""

    eps: float = 1e-3
    name: ClassVar[str] = "zero_weight_fraction"

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def __call__(self, weights: torch.Tensor) -> float:
        return zero_weight_fraction(weights, self.eps)


def prototype_sizes(scores: torch.Tensor, weights: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor | None,
                    eps: float = 1e-3, contribution_eps: float | None = None) -> dict[str, float]:
    """Every size of one test set, under both definitions: the one function the trainers
    (:func:`prototype_metrics`) and ``sparsex evaluate`` measure sizes with.

    ``scores (N, P)``, ``weights (K, P)`` effective class weights, ``predicted (N,)`` and true
    ``labels (N,)`` (None for unlabelled images: the true-class sizes are left out). Keys:
    ``local_size`` (predicted class, ``> contribution_eps``), ``local_size_true`` (true class,
    ProtoS-ViT's), ``local_size_all``, ``global_size`` (``max_c W > eps``) and
    ``global_size_used`` (ProtoS-ViT's). ``contribution_eps`` (default ``eps``) thresholds the
    contributions ``s_p W[c, p]``; pass ``sparsex.models.contribution_threshold(head, eps)`` so a
    head that zeroes importances below its own threshold in its logits is measured with it.
    """
    contribution_eps = eps if contribution_eps is None else _check_eps(contribution_eps)
    sizes = {
        LocalSize.name: LocalSize(contribution_eps)(scores, weights, predicted),
        LocalSizeAllClasses.name: LocalSizeAllClasses(contribution_eps)(scores, weights),
        GlobalSize.name: GlobalSize(eps)(weights),
    }
    if labels is not None:
        sizes[LocalSizeTrueClass.name] = LocalSizeTrueClass(contribution_eps)(scores, weights, labels)
        sizes[GlobalSizeUsed.name] = GlobalSizeUsed(contribution_eps)(scores, weights, labels)
    return sizes


def prototype_metrics(
    scores: torch.Tensor,
    weights: torch.Tensor,
    logits: torch.Tensor,
    probs: torch.Tensor,
    targets: torch.Tensor,
    eps: float = 1e-3,
    threshold: float = 0.5,
    contribution_eps: float | None = None,
) -> dict[str, float | list[int]]:
    """All prototype metrics of one test set, as plain Python numbers (ready for metrics.json).

    ``scores (N, P)``, ``weights (K, P)`` effective class weights, ``logits (N, K)``,
    ``probs (N, K)`` the model's probabilities, ``targets (N,)``. The predicted class is
    ``logits.argmax(1)``. Keys: ``accuracy`` and ``abstention``
    (:func:`~sparsex.metrics.accuracy.accuracy_with_abstentions`), the sizes of :func:`prototype_sizes`
    (``local_size``, ``local_size_true``, ``local_size_all``, ``global_size``,
    ``global_size_used``), ``ocla_score``, ``classes_above_t_histogram`` (list, see
    :func:`classes_above_histogram`), ``zero_weight_fraction``. ``eps`` thresholds the weights
    (global size, zero weights) and, unless ``contribution_eps`` is given, the contributions
    ``s_p W[c, p]`` of the local sizes and of ``global_size_used``.
    """
    check_tensor(scores, "scores", "(N, P)", nonempty=True)
    check_tensor(weights, "weights", "(K, P)", nonempty=True)
    check_tensor(logits, "logits", "(N, K)", nonempty=True)
    _check_probs(probs)
    _check_num_prototypes(scores, weights)
    _check_num_classes(logits, "logits", weights)
    _check_num_classes(probs, "probs", weights)
    if not scores.shape[0] == logits.shape[0] == probs.shape[0]:
        raise InputError(
            "scores, logits and probs must have the same number of images,"
            f" got {scores.shape[0]}, {logits.shape[0]} and {probs.shape[0]}"
        )
    _check_labels(targets, "targets", *logits.shape)
    _check_same_device(scores=scores, weights=weights, logits=logits, probs=probs, targets=targets)
    return {
        **accuracy_with_abstentions(logits, targets),
        **prototype_sizes(scores, weights, logits.argmax(dim=1), targets, eps, contribution_eps),
        OCLAScore.name: OCLAScore(threshold)(probs, targets),
        "classes_above_t_histogram": classes_above_histogram(probs, threshold),
        ZeroWeightFraction.name: ZeroWeightFraction(eps)(weights),
    }
