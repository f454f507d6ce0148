"""Consistency and stability of prototype models (EvalProtoPNet style, with part masks in place
of keypoints), as docs/metrics.md defines them (differences from the reference code: docs/references.md).

Reference: Q. Huang, M. Xue, W. Huang, H. Zhang, J. Song, Y. Jing, M. Song, "Evaluation and
Improvement of Interpretability for Self-Explainable Part-Prototype Networks", ICCV 2023
(EvalProtoPNet). There, a prototype's region is a fixed 72 x 72 patch of the 224 x 224 image
around the peak of its (upsampled) activation map and a part is "in" the region when its keypoint
is; here the part world gives pixel-exact part masks, so a part is in the region when its mask
covers at least ``min_overlap`` pixels of it.

Notation: class weights ``W (C, P)``; ``N`` images of size ``H x W`` with labels ``y_n`` and
part masks ``M_n (K, H, W)``; the prototype maps are ``h x w`` and ``l_n(p)`` is the flat arg-max
of map ``p`` on image ``n`` (``PrototypeOutput.locations``).

- **Prototype class**: ``c(p) = argmax_c W[c, p]`` when ``max_c W[c, p] > eps`` (as for the global
  size), else ``-1`` (unused; never scored).
- **Region** ``R_n(p)``: the feature cell ``(i, j) = divmod(l_n(p), w)`` covers the image box
  ``[i H/h, (i+1) H/h) x [j W/w, (j+1) W/w)``; with ``region = r`` the box is instead
  ``r H x r W`` centred on the cell centre ``((i + 1/2) H/h, (j + 1/2) W/w)`` (EvalProtoPNet:
  ``r = 72/224``), clipped to the image. A pixel ``(a, b)`` is in the box when its centre
  ``(a + 1/2, b + 1/2)`` is.
- **Part vector** ``o_p(x_n) in {0, 1}^K``: ``o_p(x_n)[k] = 1`` iff ``|M_n[k] ∩ R_n(p)| >= min_overlap``.
- **Consistency**: with ``I_c = {n : y_n = c}`` and ``V_n[k]`` whether part ``k`` is visible on image
  ``n`` (default: always), the frequency of part ``k`` for prototype ``p`` is
  ``f_p[k] = sum_{n in I_c(p)} o_p(x_n)[k] V_n[k] / max(1, sum_{n in I_c(p)} V_n[k])``
  (EvalProtoPNet divides by the number of images on which the part is annotated; with every part
  visible this is the plain mean), and ``p`` is consistent iff ``max_k f_p[k] >= mu`` (``mu = 0.8``).
  The score is the fraction of scored prototypes that are consistent.
- **Stability**: the stability of ``p`` is ``(1 / |I_c(p)|) sum_{n in I_c(p)} [o_p(x_n) = o_p(x~_n)]``
  (whole vectors equal) for a noisy image ``x~_n``, ``z ~ N(0, I)``:

  - ``noise_space="normalised"`` (default; EvalProtoPNet ``util/eval_interpretability.py``,
    ``perturb_img``): the noise is added to the *normalised* image the backbone sees,
    ``(x_n - m) / s + clip(sigma z, -b, b)`` with ``sigma = 0.2`` and ``b = 0.25``
    (``noise_bound``; None: unclipped, as EvalProtoPNet's 2022 ``eval_stability.py``), and the
    image is not clipped: for ImageNet statistics ``s ~ 0.226`` this is about ``0.045`` in
    ``[0, 1]`` pixel units (Lite0: ``s = 0.5``, ``0.1``);
  - ``noise_space="pixel"`` (sparsex's earlier default): ``x~_n = clip(x_n + sigma z, 0, 1)`` in
    ``[0, 1]`` pixel units (``noise_bound`` unused).

Both scores are averaged over the scored prototypes (``average="prototypes"``, default;
EvalProtoPNet's current code) or over classes (``average="classes"``: the mean over the classes
with a scored prototype of the mean over that class's prototypes; EvalProtoPNet's 2022
``eval_stability.py``, which equals the former when every class has as many prototypes, as
ProtoPNet's do). The part vectors are compared whole, as EvalProtoPNet does since 2023
(``np.abs(a - b).sum(-1) == 0``); its 2022 code compared ``(a - b).sum(-1) == 0``, which counts a
prototype that swaps one part for another as stable.

A prototype is *scored* when it is used (``c(p) >= 0``) and its class has at least one image;
used prototypes whose class has no image are skipped (the driver counts them). The pure functions
work on tensors (hand-testable); :func:`consistency_stability` runs a prototype head on a frozen
backbone over a part-mask dataset (the part world) and computes both scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..checks import check_indices, check_int, check_number
from ..errors import InputError
from ..inference import frozen
from ..progress import progress_bar
from .base import Metric, _check_eps

#: EvalProtoPNet's region: a 72 x 72 patch of a 224 x 224 image.
DEFAULT_REGION = 72 / 224
#: Where the stability noise is added: the backbone's normalised input (EvalProtoPNet) or the [0, 1] image.
NOISE_SPACES = ("normalised", "pixel")
#: EvalProtoPNet's bound on the noise in normalised units (``perturb_img(eps=0.25)``).
DEFAULT_NOISE_BOUND = 0.25
#: What consistency and stability are averaged over.
AVERAGES = ("prototypes", "classes")
#: Snaps a box edge within this many pixels of a pixel-centre boundary onto it (float round-off).
_EDGE_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------------------
# Checks (one-line InputErrors).
# ----------------------------------------------------------------------------------------------


def _shape(x: Any) -> Any:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


def _check_int_tensor(x: Any, name: str, shape: str, dims: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != dims:
        raise InputError(f"{name} must be a tensor of shape {shape}, got {_shape(x)}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise InputError(f"{name} must have an integer dtype, got {x.dtype}")
    return x


def _check_bool_tensor(x: Any, name: str, shape: str, dims: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != dims:
        raise InputError(f"{name} must be a tensor of shape {shape}, got {_shape(x)}")
    if x.dtype != torch.bool:
        raise InputError(f"{name} must be a bool tensor, got dtype {x.dtype}")
    return x


def _check_mu(mu: Any) -> float:
    return check_number(mu, "mu", 0, 1, low_open=True)


def _check_region(region: Any) -> float | None:
    return check_number(region, "region (a fraction of the image side; None: the feature cell)", 0, 1, low_open=True,
                        none_ok=True)


def _check_sigma(sigma: Any) -> float:
    return check_number(sigma, "sigma", 0)


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_feature_size(feature_size: Any) -> tuple[int, int]:
    if not isinstance(feature_size, (tuple, list)) or len(feature_size) != 2:
        raise InputError(f"feature_size must be two positive integers (h, w), got {feature_size!r}")
    return check_int(feature_size[0], "feature_size h", 1), check_int(feature_size[1], "feature_size w", 1)


def _check_scoring_inputs(part_vecs: Any, labels: Any, classes: Any, name: str = "part_vecs") -> None:
    _check_bool_tensor(part_vecs, name, "(N, P, K)", 3)
    n, p, _ = part_vecs.shape
    _check_int_tensor(labels, "labels", "(N,)", 1)
    if labels.shape[0] != n:
        raise InputError(f"labels have {labels.shape[0]} entries but {name} have {n} images (shape {tuple(part_vecs.shape)})")
    if labels.numel() and labels.min() < 0:
        raise InputError(f"labels must be class indices >= 0, got {labels.min().item()}")
    _check_int_tensor(classes, "prototype_classes", "(P,)", 1)
    if classes.shape[0] != p:
        raise InputError(f"prototype_classes have {classes.shape[0]} entries but {name} have {p} prototypes")
    if classes.numel() and classes.min() < -1:
        raise InputError(f"prototype_classes must be class indices or -1 (unused), got {classes.min().item()}")
    devices = {part_vecs.device, labels.device, classes.device}
    if len(devices) > 1:
        raise InputError(f"inputs must be on one device, got {', '.join(sorted(map(str, devices)))}")


def _class_membership(labels: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``(P, N)`` float64: ``[y_n = c(p)]`` (all zero for unused prototypes)."""
    return ((labels[None, :] == classes[:, None]) & (classes[:, None] >= 0)).double()


# ----------------------------------------------------------------------------------------------
# Pure functions on tensors.
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def prototype_classes(weights: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The class of every prototype: ``c(p) = argmax_c W[c, p]`` if ``max_c W[c, p] > eps``, else -1.

    ``weights (C, P)`` effective class weights (e.g. ``head.class_weights()``). Ties go to the
    lowest class index. Returns int64 ``(P,)`` on the weights' device.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() != 2 or 0 in weights.shape:
        raise InputError(f"weights must have shape (C, P) with every size >= 1, got {_shape(weights)}")
    if not weights.is_floating_point():
        raise InputError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
    if not torch.isfinite(weights).all():
        raise InputError("weights contain NaN or Inf values")
    eps = _check_eps(eps)
    top, cls = weights.max(dim=0)
    return torch.where(top > eps, cls, torch.full_like(cls, -1)).long()


def _pixel_bounds(centres: torch.Tensor, half: torch.Tensor | float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last pixel whose centre ``a + 1/2`` lies in ``[centre - half, centre + half)``."""
    lo = torch.ceil(centres - half - 0.5 - _EDGE_TOLERANCE).long().clamp(0, size)
    hi = torch.ceil(centres + half - 0.5 - _EDGE_TOLERANCE).long().clamp(0, size)
    return lo, torch.maximum(lo, hi)


@torch.no_grad()
def part_vectors(locations: torch.Tensor, feature_size: tuple[int, int], part_masks: torch.Tensor,
                 region: float | None = DEFAULT_REGION, min_overlap: int = 1) -> torch.Tensor:
    """The part vectors ``o_p(x_n)``: which parts lie in each prototype's region on each image.

    ``locations (N, P)`` integer flat arg-max indices into ``h * w`` (``PrototypeOutput.locations``);
    ``feature_size (h, w)``; ``part_masks (N, K, H, W)`` bool. The region of ``p`` on image ``n``
    is the image box of feature cell ``(i, j) = divmod(l, w)``, i.e. rows ``[i H/h, (i+1) H/h)``
    and columns ``[j W/w, (j+1) W/w)`` (``region=None``), or a box of ``region * H`` by
    ``region * W`` pixels centred on that cell's centre, clipped to the image (default
    ``72/224``, EvalProtoPNet's 72 x 72 patch on 224 x 224 images); a pixel belongs to a box when
    its centre does. Part ``k`` is in the region iff its mask covers at least ``min_overlap``
    pixels of it. Returns bool ``(N, P, K)`` on the masks' device (pixel counts by summed-area
    tables, so the cost does not grow with the region).
    """
    _check_int_tensor(locations, "locations", "(N, P)", 2)
    h, w = _check_feature_size(feature_size)
    _check_bool_tensor(part_masks, "part_masks", "(N, K, H, W)", 4)
    region = _check_region(region)
    min_overlap = check_int(min_overlap, "min_overlap", 1)
    n, k, height, width = part_masks.shape
    if locations.shape[0] != n:
        raise InputError(f"locations have {locations.shape[0]} images but part_masks have {n}"
                         f" (locations {tuple(locations.shape)}, part_masks {tuple(part_masks.shape)})")
    if locations.numel() and (locations.min() < 0 or locations.max() >= h * w):
        bad = locations.min() if locations.min() < 0 else locations.max()
        raise InputError(f"locations must be flat indices in [0, {h * w}) for a {h}x{w} feature map, got {bad.item()}")
    device = part_masks.device
    locations = locations.to(device)

    # Pixel bounds of every cell's box, in float64 with pixel centres at a + 1/2.
    rows = torch.arange(h, dtype=torch.float64, device=device)
    cols = torch.arange(w, dtype=torch.float64, device=device)
    if region is None:
        r0, r1 = _pixel_bounds((rows + 0.5) * height / h, height / (2 * h), height)
        c0, c1 = _pixel_bounds((cols + 0.5) * width / w, width / (2 * w), width)
    else:
        r0, r1 = _pixel_bounds((rows + 0.5) * height / h, region * height / 2, height)
        c0, c1 = _pixel_bounds((cols + 0.5) * width / w, region * width / 2, width)
    i, j = locations // w, locations % w  # (N, P)
    top, bottom, left, right = r0[i], r1[i], c0[j], c1[j]

    # Summed-area table S[a, b] = number of mask pixels above-left of (a, b), shape (N, K, H+1, W+1).
    table = torch.zeros(n, k, height + 1, width + 1, dtype=torch.int32, device=device)
    table[:, :, 1:, 1:] = part_masks.to(torch.int32).cumsum(dim=2, dtype=torch.int32).cumsum(dim=3, dtype=torch.int32)
    flat = table.flatten(2)  # (N, K, (H+1)(W+1))

    def corner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (N, P) -> (N, K, P)
        return flat.gather(2, (a * (width + 1) + b)[:, None, :].expand(n, k, -1))

    counts = corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)
    return (counts >= min_overlap).permute(0, 2, 1).contiguous()


@torch.no_grad()
def part_frequencies(part_vecs: torch.Tensor, labels: torch.Tensor, prototype_classes: torch.Tensor,
                     visible: torch.Tensor | None = None) -> torch.Tensor:
    """``f_p[k]``: how often part ``k`` lies in prototype ``p``'s region on the images of its class.

    ``part_vecs (N, P, K)`` bool (:func:`part_vectors`), ``labels (N,)``, ``prototype_classes (P,)``
    (:func:`prototype_classes`, -1 for unused), ``visible (N, K)`` bool or ``None`` (every part
    visible). ``f_p[k] = sum_{n: y_n = c(p)} o_p(x_n)[k] V_n[k] / max(1, sum_{n: y_n = c(p)} V_n[k])``
    (EvalProtoPNet's denominator: the images on which the part can be seen). Returns float64
    ``(P, K)``; rows of prototypes that are not scored (unused, or no image of their class) are NaN.
    """
    _check_scoring_inputs(part_vecs, labels, prototype_classes)
    n, _, k = part_vecs.shape
    if visible is not None:
        _check_bool_tensor(visible, "visible", "(N, K)", 2)
        if tuple(visible.shape) != (n, k):
            raise InputError(f"visible must have shape ({n}, {k}) to match part_vecs, got {tuple(visible.shape)}")
        visible = visible.to(part_vecs.device)
    else:
        visible = torch.ones(n, k, dtype=torch.bool, device=part_vecs.device)
    member = _class_membership(labels, prototype_classes)  # (P, N)
    hits = torch.einsum("pn,npk->pk", member, (part_vecs & visible[:, None, :]).double())
    seen = member @ visible.double()  # (P, K)
    freq = hits / seen.clamp(min=1)
    scored = member.sum(dim=1) > 0
    return torch.where(scored[:, None], freq, torch.full_like(freq, math.nan))


@torch.no_grad()
def consistency_per_prototype(part_vecs: torch.Tensor, labels: torch.Tensor, prototype_classes: torch.Tensor,
                              mu: float = 0.8, visible: torch.Tensor | None = None) -> torch.Tensor:
    """Whether each prototype is consistent: ``max_k f_p[k] >= mu`` (:func:`part_frequencies`).

    Returns float64 ``(P,)``: 1.0 consistent, 0.0 not, NaN not scored (unused, or no image of
    its class).
    """
    mu = _check_mu(mu)
    freq = part_frequencies(part_vecs, labels, prototype_classes, visible)
    if freq.shape[1] == 0:
        raise InputError("part_vecs have no parts (K = 0): consistency needs at least one part")
    best = freq.amax(dim=1)
    return torch.where(best.isnan(), best, (best >= mu).double())


def _mean_scored(values: torch.Tensor, classes: torch.Tensor, average: str, what: str) -> float:
    """The mean of the per-prototype ``values`` (NaN: not scored) over the scored prototypes, or
    with ``average="classes"`` over the classes ``classes (P,)`` of the scored prototypes of the
    mean over each class's."""
    _check_choice(average, "average", AVERAGES)
    scored = ~values.isnan()
    if not scored.any():
        raise InputError(f"no prototype can be scored for {what}: every prototype is unused or its class has no image")
    if average == "prototypes":
        return values[scored].mean().item()
    _, group = classes.to(values.device)[scored].unique(return_inverse=True)
    sums = torch.zeros(int(group.max()) + 1, dtype=values.dtype, device=values.device).index_add_(0, group, values[scored])
    return (sums / torch.bincount(group).to(values.dtype)).mean().item()


@torch.no_grad()
def consistency(part_vecs: torch.Tensor, labels: torch.Tensor, prototype_classes: torch.Tensor,
                mu: float = 0.8, visible: torch.Tensor | None = None, average: str = "prototypes") -> float:
    """Consistency score: the fraction of scored prototypes ``p`` with ``max_k f_p[k] >= mu``
    (``average="prototypes"``), or its mean over classes (``average="classes"``, see the module
    docstring).

    See :func:`part_frequencies` for ``f_p`` and the inputs; ``mu`` in ``(0, 1]`` (EvalProtoPNet:
    0.8). Prototypes that are unused or whose class has no image are skipped; raises
    :class:`InputError` when none is left.
    """
    _check_choice(average, "average", AVERAGES)
    return _mean_scored(consistency_per_prototype(part_vecs, labels, prototype_classes, mu, visible), prototype_classes,
                        average, "consistency")


@torch.no_grad()
def stability_per_prototype(part_vecs: torch.Tensor, noisy_part_vecs: torch.Tensor, labels: torch.Tensor,
                            prototype_classes: torch.Tensor) -> torch.Tensor:
    """Stability of each prototype: the fraction of the images of its class on which its part
    vector is unchanged by the noise, ``mean_{n: y_n = c(p)} [o_p(x_n) = o_p(x~_n)]`` (the whole
    vector: a prototype that swaps one part for another is not stable).

    ``part_vecs`` and ``noisy_part_vecs`` bool ``(N, P, K)`` (the same images, clean and noisy).
    Returns float64 ``(P,)``, NaN for prototypes that are not scored.
    """
    _check_scoring_inputs(part_vecs, labels, prototype_classes)
    _check_bool_tensor(noisy_part_vecs, "noisy_part_vecs", "(N, P, K)", 3)
    if noisy_part_vecs.shape != part_vecs.shape:
        raise InputError(f"noisy_part_vecs must have the shape of part_vecs {tuple(part_vecs.shape)},"
                         f" got {tuple(noisy_part_vecs.shape)}")
    same = (part_vecs == noisy_part_vecs.to(part_vecs.device)).all(dim=2).double()  # (N, P)
    member = _class_membership(labels, prototype_classes)  # (P, N)
    count = member.sum(dim=1)
    agree = (member * same.T).sum(dim=1)
    return torch.where(count > 0, agree / count.clamp(min=1), torch.full_like(count, math.nan))


@torch.no_grad()
def stability(part_vecs: torch.Tensor, noisy_part_vecs: torch.Tensor, labels: torch.Tensor,
              prototype_classes: torch.Tensor, average: str = "prototypes") -> float:
    """Stability score: the mean of :func:`stability_per_prototype` over the scored prototypes
    (``average="prototypes"``) or over their classes (``average="classes"``); raises
    :class:`InputError` when none is scored."""
    _check_choice(average, "average", AVERAGES)
    return _mean_scored(stability_per_prototype(part_vecs, noisy_part_vecs, labels, prototype_classes), prototype_classes,
                        average, "stability")


# ----------------------------------------------------------------------------------------------
# Metric classes.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consistency(Metric):
    """:func:`consistency` as a metric: ``Consistency(mu, average)(part_vecs, labels, prototype_classes, visible=None)``."""

    mu: float = 0.8
    average: str = "prototypes"
    name: ClassVar[str] = "consistency"

    def __post_init__(self) -> None:
        _check_mu(self.mu)
        _check_choice(self.average, "average", AVERAGES)

    def __call__(self, part_vecs: torch.Tensor, labels: torch.Tensor, prototype_classes: torch.Tensor,
                 visible: torch.Tensor | None = None) -> float:
        return consistency(part_vecs, labels, prototype_classes, self.mu, visible, self.average)


@dataclass(frozen=True)
class Stability(Metric):
    """:func:`stability` as a metric: ``Stability(average)(part_vecs, noisy_part_vecs, labels, prototype_classes)``."""

    average: str = "prototypes"
    name: ClassVar[str] = "stability"

    def __post_init__(self) -> None:
        _check_choice(self.average, "average", AVERAGES)

    def __call__(self, part_vecs: torch.Tensor, noisy_part_vecs: torch.Tensor, labels: torch.Tensor,
                 prototype_classes: torch.Tensor) -> float:
        return stability(part_vecs, noisy_part_vecs, labels, prototype_classes, self.average)


# ----------------------------------------------------------------------------------------------
# Driver: a prototype head on a frozen backbone over a part-mask dataset.
# ----------------------------------------------------------------------------------------------


@dataclass
class PrototypePartVectors:
    """What :func:`collect_part_vectors` finds: ``clean`` and ``noisy`` bool ``(N, P, K)`` part
    vectors, ``labels (N,)``, ``visible (N, K)`` (the part's mask is not empty), ``classes (P,)``
    (:func:`prototype_classes`) and the dataset ``indices (N,)`` they belong to."""

    clean: torch.Tensor
    noisy: torch.Tensor
    labels: torch.Tensor
    visible: torch.Tensor
    classes: torch.Tensor
    indices: torch.Tensor


def _head_and_backbone(model: Any) -> tuple[nn.Module, nn.Module]:
    if hasattr(model, "head") and hasattr(model, "backbone"):
        head, backbone = model.head, model.backbone
    elif isinstance(model, (tuple, list)) and len(model) == 2:
        head, backbone = model
    else:
        raise InputError(f"model must be a PrototypeExplainer or a (head, backbone) pair, got {type(model).__name__}")
    if not isinstance(head, nn.Module) or not isinstance(backbone, nn.Module):
        raise InputError(f"head and backbone must be torch modules, got {type(head).__name__} and {type(backbone).__name__}")
    if not callable(getattr(head, "class_weights", None)):
        raise InputError(f"the head ({type(head).__name__}) has no class_weights(); it is not a prototype head")
    if not callable(getattr(backbone, "extract", None)):
        raise InputError(f"the backbone ({type(backbone).__name__}) has no extract(images); pass a sparsex Backbone")
    return head, backbone


def _device(*modules: nn.Module) -> torch.device:
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device
    return torch.device("cpu")


def _noise(index: int, shape: torch.Size, seed: int) -> torch.Tensor:
    """Standard normal noise for dataset item ``index``, from its own seeded generator (so the
    noise of an image does not depend on the batch size or on which other images are measured)."""
    item_seed = int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randn(shape, generator=torch.Generator().manual_seed(item_seed))


def _noisy_features(backbone: nn.Module, images: torch.Tensor, noise: torch.Tensor, sigma: float, noise_space: str,
                    noise_bound: float | None) -> torch.Tensor:
    """The backbone's features of the noisy images (see the module docstring): ``noise`` is standard
    normal of the normalised input's shape (``normalised``) or of the images' (``pixel``)."""
    if noise_space == "pixel":
        return backbone.extract((images + sigma * noise).clamp(0, 1))
    step = sigma * noise
    if noise_bound is not None:
        step = step.clamp(-noise_bound, noise_bound)
    normalised = backbone.preprocess(images)
    return backbone(normalised + step.to(normalised.device))


def pixel_sigma(backbone: nn.Module, sigma: float, noise_space: str = "normalised") -> float:
    """The noise's standard deviation in ``[0, 1]`` pixel units (before any bound): ``sigma`` for
    pixel-space noise, ``sigma`` times the backbone's mean channel ``std`` for normalised-space noise."""
    _check_choice(noise_space, "noise_space", NOISE_SPACES)
    if noise_space == "pixel":
        return float(sigma)
    return float(sigma * torch.as_tensor(backbone.std).float().mean())


def _check_noise_backbone(backbone: nn.Module, noise_space: str) -> None:
    if noise_space == "normalised" and not (callable(getattr(backbone, "preprocess", None))
                                            and isinstance(getattr(backbone, "std", None), torch.Tensor)):
        raise InputError(f"noise_space='normalised' needs a backbone with preprocess() and std (a sparsex Backbone); "
                         f"{type(backbone).__name__} has not: pass noise_space='pixel'")


@torch.no_grad()
def collect_part_vectors(model: Any, dataset: Any, indices: Sequence[int] | None = None, batch_size: int = 32,
                         sigma: float = 0.2, seed: int = 0, region: float | None = DEFAULT_REGION,
                         min_overlap: int = 1, eps: float = 1e-3, progress: bool = False, noise_space: str = "normalised",
                         noise_bound: float | None = DEFAULT_NOISE_BOUND) -> PrototypePartVectors:
    """Run the model on every item of ``dataset`` (or ``indices``) twice, clean and with noise, and
    return the part vectors (:func:`part_vectors`) of both.

    ``model``: a :class:`~sparsex.explainers.PrototypeExplainer` or a ``(head, backbone)`` pair
    (``backbone.extract(images) -> features``, ``head(features) -> PrototypeOutput``,
    ``head.class_weights() -> (C, P)``); both are run frozen (eval mode, restored afterwards).
    ``dataset`` items are dicts with ``image (3, H, W)`` in ``[0, 1]``, ``label`` and
    ``part_masks (K, H, W)`` bool (the part world). The noise (module docstring: ``noise_space``
    ``"normalised"``, EvalProtoPNet's, needs ``backbone.preprocess``, ``backbone.std`` and
    ``backbone(normalised)``; ``"pixel"`` only ``extract``) is ``sigma z`` with ``z`` drawn from a
    ``torch.Generator`` seeded from ``(seed, item index)``. Part masks are in the dataset image's
    pixels; the feature map is taken to cover the whole image (the backbone resizes, it does not crop).
    """
    head, backbone = _head_and_backbone(model)
    batch_size = check_int(batch_size, "batch_size", 1)
    sigma = _check_sigma(sigma)
    region = _check_region(region)
    min_overlap = check_int(min_overlap, "min_overlap", 1)
    check_int(seed, "seed", 0)
    _check_choice(noise_space, "noise_space", NOISE_SPACES)
    noise_bound = check_number(noise_bound, "noise_bound", 0, low_open=True, none_ok=True)
    _check_noise_backbone(backbone, noise_space)
    indices = check_indices(indices, len(dataset))
    device = _device(head, backbone)
    with frozen(head), frozen(backbone):
        classes = prototype_classes(head.class_weights().detach().float().cpu(), eps)
        clean, noisy, labels, visible = [], [], [], []
        starts = range(0, len(indices), batch_size)
        for start in progress_bar(starts, desc="consistency/stability", unit="batch", disable=not progress):
            batch = indices[start:start + batch_size]
            items = [dataset[i] for i in batch]
            if not all(isinstance(item, dict) and "part_masks" in item for item in items):
                raise InputError("dataset items have no part_masks; consistency and stability need part masks"
                                 " (use the part world, create_dataset('parts', ...))")
            images = torch.stack([item["image"] for item in items]).float()
            masks = torch.stack([item["part_masks"] for item in items]).bool()
            if images.dim() != 4 or masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
                raise InputError(f"dataset images {tuple(images.shape)} and part_masks {tuple(masks.shape)} do not match")
            images = images.to(device)
            noise_shape = (backbone.preprocess(images[:1]).shape[1:] if noise_space == "normalised" else images.shape[1:])
            noise = torch.stack([_noise(i, noise_shape, seed) for i in batch]).to(device)
            outs = [head(backbone.extract(images)),
                    head(_noisy_features(backbone, images, noise, sigma, noise_space, noise_bound))]
            h, w = outs[0].maps.shape[-2:]
            num = outs[0].locations.shape[1]
            locations = torch.cat([out.locations.long().cpu() for out in outs], dim=1)  # (B, 2P): one table for both
            vecs = part_vectors(locations, (h, w), masks, region, min_overlap)
            clean.append(vecs[:, :num])
            noisy.append(vecs[:, num:])
            labels.append(torch.tensor([int(item["label"]) for item in items], dtype=torch.int64))
            visible.append(masks.flatten(2).any(dim=2))
    clean_t, noisy_t = torch.cat(clean), torch.cat(noisy)
    if clean_t.shape[1] != classes.shape[0]:
        raise InputError(f"the head has {clean_t.shape[1]} prototype maps but class_weights() has {classes.shape[0]} prototypes")
    return PrototypePartVectors(clean_t, noisy_t, torch.cat(labels), torch.cat(visible), classes,
                                torch.tensor(indices, dtype=torch.int64))


@torch.no_grad()
def consistency_stability(model: Any, dataset: Any, indices: Sequence[int] | None = None, batch_size: int = 32,
                          sigma: float = 0.2, seed: int = 0, region: float | None = DEFAULT_REGION,
                          mu: float = 0.8, min_overlap: int = 1, eps: float = 1e-3,
                          progress: bool = False, noise_space: str = "normalised",
                          noise_bound: float | None = DEFAULT_NOISE_BOUND, average: str = "prototypes") -> dict[str, Any]:
    """Consistency and stability of a prototype model on a part-mask dataset (each image is
    forwarded once clean and once noisy; see :func:`collect_part_vectors` for the arguments).

    A part counts as visible on an image when its mask is not empty (EvalProtoPNet's annotated
    keypoints), which sets the denominators of :func:`part_frequencies`. Returns plain Python
    numbers: ``consistency``, ``stability`` (averaged as ``average`` says), ``prototypes_counted``
    (scored prototypes), ``prototypes_skipped`` (used, but no image of their class among the
    measured ones), ``prototypes_unused`` (``max_c W[c, p] <= eps``), ``num_images``, the settings
    ``mu``, ``sigma``, ``noise_space``, ``noise_bound``, ``average``, ``region``, ``min_overlap``,
    ``seed``, ``eps``, and ``sigma_pixels`` (:func:`pixel_sigma`: the noise in ``[0, 1]`` pixel units).
    """
    mu = _check_mu(mu)
    _check_choice(average, "average", AVERAGES)
    vecs = collect_part_vectors(model, dataset, indices, batch_size, sigma, seed, region, min_overlap, eps, progress,
                                noise_space, noise_bound)
    per_consistency = consistency_per_prototype(vecs.clean, vecs.labels, vecs.classes, mu, vecs.visible)
    per_stability = stability_per_prototype(vecs.clean, vecs.noisy, vecs.labels, vecs.classes)
    used = int((vecs.classes >= 0).sum())
    counted = int((~per_consistency.isnan()).sum())
    return {
        Consistency.name: _mean_scored(per_consistency, vecs.classes, average, "consistency"),
        Stability.name: _mean_scored(per_stability, vecs.classes, average, "stability"),
        "prototypes_counted": counted,
        "prototypes_skipped": used - counted,
        "prototypes_unused": int(vecs.classes.shape[0]) - used,
        "num_images": int(vecs.labels.shape[0]),
        "mu": mu, "sigma": float(sigma), "noise_space": noise_space,
        "noise_bound": None if noise_space == "pixel" or noise_bound is None else float(noise_bound),
        "sigma_pixels": pixel_sigma(_head_and_backbone(model)[1], sigma, noise_space), "average": average,
        "region": region, "min_overlap": int(min_overlap), "seed": int(seed), "eps": float(eps),
    }
