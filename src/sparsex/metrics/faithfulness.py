"""Faithfulness of post-hoc masks and attributions, exactly as docs/metrics.md ("Masks and
attributions") states them, batched in torch.

Notation: a classifier ``model`` mapping images ``x (B, C, H, W)`` to logits ``(B, K)`` (run
frozen: eval mode, no gradients, restored afterwards), masks ``(B, 1, H, W)`` (or ``(B, H, W)``)
with values in ``[0, 1]`` (bool and integer 0/1 masks are accepted), attributions ``(B, 1, H, W)``
(or ``(B, H, W)``), and a baseline ``x'`` (default: the blurred image,
:func:`sparsex.perturb.blur`; also ``"zeros"``, a number or a tensor broadcastable to ``x``).
A *pixel* is one spatial position, all channels together.

- :func:`mask_area`: ``mean_{i,j} m[i, j]`` per image (the fraction of pixels in a binary mask);
- :func:`sufficiency`: the fraction of images with ``argmax f(m x + (1 - m) x') = argmax f(x)``;
- :func:`deletion_auc` / :func:`insertion_auc` (RISE, Petsiuk et al. 2018): see
  :func:`perturbation_curve`; the AUC of the curve by the trapezoid rule on ``[0, 1]``.

Each metric exists as a plain function and as a Quantus-style class (settings at construction,
data at call, ``higher_is_better`` giving the score direction; the class returns the mean over
images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

import torch
from torch import nn

from ..checks import check_int, check_number, check_tensor
from ..errors import InputError
from ..inference import DEFAULT_BATCH, Target, check_model, check_model_device, frozen, predict_logits, resolve_targets
from ..perturb import composite, make_baseline
from .base import Metric

#: The baseline argument of the metrics: ``None``/``"blur"``, ``"zeros"``, a number or a tensor.
Baseline = Union[str, float, torch.Tensor, None]

MODES = ("deletion", "insertion")


def _check_map(values: torch.Tensor, name: str, x: torch.Tensor | None = None) -> torch.Tensor:
    """A per-pixel map ``(B, 1, H, W)`` or ``(B, H, W)`` (matching ``x``), returned as ``(B, 1, H, W)``."""
    if not isinstance(values, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if values.dim() == 3:
        values = values.unsqueeze(1)
    if values.dim() != 4 or values.shape[1] != 1 or 0 in values.shape:
        raise InputError(f"{name} must have shape (B, 1, H, W) or (B, H, W) with every size >= 1, got {tuple(values.shape)}")
    if x is not None:
        expected = (x.shape[0], 1, *x.shape[2:])
        if tuple(values.shape) != expected:
            raise InputError(f"{name} must have shape {expected} to match the images {tuple(x.shape)}, got {tuple(values.shape)}")
        if values.device != x.device:
            raise InputError(f"{name} are on {values.device} but the images are on {x.device}")
    return values


def _check_masks(masks: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    masks = _check_map(masks, "masks", x)
    if not masks.is_floating_point():
        if masks.is_complex():
            raise InputError(f"masks must be real, got dtype {masks.dtype}")
        masks = masks.to(x.dtype if x is not None else torch.get_default_dtype())
    check_tensor(masks, "masks", "(B, 1, H, W)")
    if ((masks < 0) | (masks > 1)).any():
        raise InputError("masks must lie in [0, 1]")
    return masks


def _check_images(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    check_model(model)
    check_tensor(x, "x", "(B, C, H, W)", nonempty=True)
    check_model_device(model, x)
    return x


def _baseline(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    base = make_baseline(x, baseline)
    check_tensor(base, "baseline", "(B, C, H, W)")
    return base


@torch.no_grad()
def mask_area(masks: torch.Tensor) -> torch.Tensor:
    """Mask area per image: ``mean_{i,j} m[i, j]``, the fraction of the ``H * W`` pixels in the
    mask (a soft mask counts its mean value).

    ``masks (B, 1, H, W)`` or ``(B, H, W)`` in ``[0, 1]``. Returns ``(B,)`` floats in ``[0, 1]``
    on the masks' device.
    """
    masks = _check_masks(masks)
    return masks.flatten(1).mean(dim=1)


@torch.no_grad()
def sufficient(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, baseline: Baseline = None,
               internal_batch_size: int | None = DEFAULT_BATCH) -> torch.Tensor:
    """Per image, whether the mask alone keeps the decision:
    ``argmax f(m x + (1 - m) x') == argmax f(x)`` (ties to the lowest class index).

    ``x (B, C, H, W)``, ``masks (B, 1, H, W)``; ``baseline`` ``x'`` (default: the blurred ``x``).
    Returns ``(B,)`` bools on ``x``'s device.
    """
    _check_images(x, model)
    masks = _check_masks(masks, x)
    check_int(internal_batch_size, "internal_batch_size", 1, none_ok=True)
    with frozen(model):
        kept = composite(x, masks, _baseline(x, baseline))
        original = predict_logits(model, x, internal_batch_size).argmax(dim=1)
        return predict_logits(model, kept, internal_batch_size).argmax(dim=1) == original


def sufficiency(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, baseline: Baseline = None,
                internal_batch_size: int | None = DEFAULT_BATCH) -> float:
    """Sufficiency: the fraction of images whose top-1 label on ``m x + (1 - m) x'`` equals the
    label on ``x`` (:func:`sufficient`, averaged). Returns a ``float`` in ``[0, 1]``."""
    return sufficient(model, x, masks, baseline, internal_batch_size).double().mean().item()


def top_fraction_mask(attributions: torch.Tensor, fraction: float) -> torch.Tensor:
    """The 0/1 mask ``(B, 1, H, W)`` of the top ``floor(fraction * H * W)`` pixels of each image by
    ``attributions (B, 1, H, W)`` (:func:`pixel_ranks`: ties to the lower position)."""
    check_number(fraction, "fraction of the pixels", 0, 1, low_open=True)
    ranks = pixel_ranks(_check_map(attributions, "attributions"))
    keep = ranks < int(fraction * ranks.shape[1])
    return keep.to(attributions.dtype).view_as(attributions)


def map_sufficient(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, area: float = 0.1,
                   internal_batch_size: int | None = DEFAULT_BATCH) -> torch.Tensor:
    """Per image, whether an explanation keeps the decision on the blurred image (:func:`sufficient`):
    a binary mask (every value 0 or 1) as it is, any other map by its top ``area`` of the pixels
    (:func:`top_fraction_mask`), so attribution maps and masks are compared at a stated area."""
    binary = bool(((maps == 0) | (maps == 1)).all())
    return sufficient(model, x, maps if binary else top_fraction_mask(maps, area), internal_batch_size=internal_batch_size)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def pixel_counts(num_pixels: int, steps: int) -> torch.Tensor:
    """How many pixels are perturbed at each of the ``steps + 1`` points of a curve:
    ``n_k = floor(k * N / steps)`` for ``k = 0..steps`` (``n_0 = 0``, ``n_steps = N``), int64."""
    return torch.arange(steps + 1, dtype=torch.long) * num_pixels // steps


def pixel_ranks(attributions: torch.Tensor) -> torch.Tensor:
    """The rank of every pixel when sorted by attribution, highest first: ``(B, H * W)`` int64,
    rank 0 the most important pixel. Ties go to the lower flat index ``i * W + j`` (a stable
    sort), so the order is deterministic."""
    flat = attributions.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


@torch.no_grad()
def perturbation_curve(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, mode: str = "deletion",
                       target: Target = None, baseline: Baseline = None, steps: int = 20,
                       internal_batch_size: int | None = DEFAULT_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """The deletion or insertion curve of RISE (Petsiuk et al. 2018).

    Pixels are ordered by attribution, highest first (:func:`pixel_ranks`, ties to the lower flat
    index). At step ``k = 0..steps`` the first ``n_k = floor(k N / steps)`` pixels
    (:func:`pixel_counts`, ``N = H * W``) form a mask ``S_k``. *Deletion* scores
    ``x_k = (1 - S_k) x + S_k x'`` (the top pixels replaced by the baseline: ``x_0 = x``,
    ``x_steps = x'``); *insertion* scores ``x_k = S_k x + (1 - S_k) x'`` (the top pixels restored
    from the baseline: ``x_0 = x'``, ``x_steps = x``). The score is ``softmax(f(x_k))[c]`` for the
    class ``c`` originally predicted on ``x`` (or ``target``).

    ``x (B, C, H, W)``, ``attributions (B, 1, H, W)``; the ``B * (steps + 1)`` images are built
    and evaluated ``internal_batch_size`` at a time (``None``: all at once). Returns the
    fractions ``n_k / N`` ``(steps + 1,)`` and the probabilities ``(B, steps + 1)`` (float32,
    on ``x``'s device).
    """
    _check_mode(mode)
    _check_images(x, model)
    attributions = _check_map(attributions, "attributions", x)
    check_tensor(attributions, "attributions", "(B, 1, H, W)")
    steps = check_int(steps, "steps", 1)
    batch_size = check_int(internal_batch_size, "internal_batch_size", 1, none_ok=True)
    batch, _, height, width = x.shape
    counts = pixel_counts(height * width, steps).to(x.device)
    ranks = pixel_ranks(attributions)
    points = steps + 1
    total = batch * points
    step = total if batch_size is None else batch_size
    with frozen(model):
        targets = resolve_targets(predict_logits(model, x, batch_size), target)
        base = _baseline(x, baseline)
        probs = []
        for start in range(0, total, step):
            index = torch.arange(start, min(start + step, total), device=x.device)
            image, k = index // points, index % points
            selected = (ranks[image] < counts[k].unsqueeze(1)).view(-1, 1, height, width)
            keep = selected if mode == "insertion" else ~selected
            logits = predict_logits(model, composite(x[image], keep, base[image]))
            probs.append(logits.float().softmax(dim=1).gather(1, targets[image].unsqueeze(1)).squeeze(1))
    fractions = counts.float() / (height * width)
    return fractions, torch.cat(probs).view(batch, points)


def _auc(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, mode: str, target: Target, baseline: Baseline,
         steps: int, internal_batch_size: int | None) -> torch.Tensor:
    fractions, probs = perturbation_curve(model, x, attributions, mode, target, baseline, steps, internal_batch_size)
    return torch.trapezoid(probs, fractions, dim=1)


def deletion_auc(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target: Target = None,
                 baseline: Baseline = None, steps: int = 20, internal_batch_size: int | None = DEFAULT_BATCH) -> torch.Tensor:
    """Deletion AUC per image: the area under the deletion curve of :func:`perturbation_curve`
    (probability of the predicted class as the most important pixels are replaced by the
    baseline), ``sum_k (f_{k+1} - f_k) (p_k + p_{k+1}) / 2`` over the fractions ``f_k`` in
    ``[0, 1]``. Lower is better. Returns ``(B,)`` float32 in ``[0, 1]``."""
    return _auc(model, x, attributions, "deletion", target, baseline, steps, internal_batch_size)


def insertion_auc(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target: Target = None,
                  baseline: Baseline = None, steps: int = 20, internal_batch_size: int | None = DEFAULT_BATCH) -> torch.Tensor:
    """Insertion AUC per image: the area under the insertion curve of :func:`perturbation_curve`
    (probability of the predicted class as the most important pixels are restored into the
    baseline), by the trapezoid rule on ``[0, 1]``. Higher is better. Returns ``(B,)`` float32 in
    ``[0, 1]``."""
    return _auc(model, x, attributions, "insertion", target, baseline, steps, internal_batch_size)


def _check_setting_baseline(baseline: Baseline) -> None:
    if isinstance(baseline, torch.Tensor):
        raise InputError("a metric's baseline setting must be 'blur', 'zeros' or a number; pass tensors to the function")
    if baseline is not None and baseline != "blur":
        make_baseline(torch.zeros(1, 1, 1, 1), baseline)  # validates the name or number


@dataclass(frozen=True)
class MaskArea(Metric):
    """Mean :func:`mask_area`: ``MaskArea()(masks) -> float`` (smaller masks are sparser)."""

    name: ClassVar[str] = "mask_area"

    def __call__(self, masks: torch.Tensor) -> float:
        return mask_area(masks).double().mean().item()


@dataclass(frozen=True)
class Sufficiency(Metric):
    """:func:`sufficiency` as a metric: ``Sufficiency(baseline)(model, x, masks) -> float``."""

    baseline: str | float | None = None
    internal_batch_size: int | None = DEFAULT_BATCH
    name: ClassVar[str] = "sufficiency"

    def __post_init__(self) -> None:
        _check_setting_baseline(self.baseline)
        check_int(self.internal_batch_size, "internal_batch_size", 1, none_ok=True)

    def __call__(self, model: nn.Module, x: torch.Tensor, masks: torch.Tensor) -> float:
        return sufficiency(model, x, masks, self.baseline, self.internal_batch_size)


@dataclass(frozen=True)
class DeletionAUC(Metric):
    """Mean :func:`deletion_auc`: ``DeletionAUC(steps, baseline)(model, x, attributions, target=None) -> float``."""

    steps: int = 20
    baseline: str | float | None = None
    internal_batch_size: int | None = DEFAULT_BATCH
    name: ClassVar[str] = "deletion_auc"
    mode: ClassVar[str] = "deletion"

    def __post_init__(self) -> None:
        check_int(self.steps, "steps", 1)
        _check_setting_baseline(self.baseline)
        check_int(self.internal_batch_size, "internal_batch_size", 1, none_ok=True)

    def __call__(self, model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target: Target = None) -> float:
        auc = _auc(model, x, attributions, self.mode, target, self.baseline, self.steps, self.internal_batch_size)
        return auc.double().mean().item()


@dataclass(frozen=True)
class InsertionAUC(DeletionAUC):
    """Mean :func:`insertion_auc`: ``InsertionAUC(steps, baseline)(model, x, attributions, target=None) -> float``."""

    name: ClassVar[str] = "insertion_auc"
    mode: ClassVar[str] = "insertion"
