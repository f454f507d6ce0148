"""Minimal mask explanations by activation matching (arXiv 2509.25686, "Minimalist Explanation
Generation and Circuit Discovery"), amortised and per image.

For an image ``x`` and a frozen classifier ``f`` with top-1 label ``y = argmax f(x)``, a mask
``m (B, 1, H, W)`` defines the explanation ``e = m * x + (1 - m) * fill`` (``fill`` the blurred
image, the baseline of docs/metrics.md). The objective (:class:`MaskObjective`) is::

    L = w_match  sum_layers A(a_l(x), a_l(e))              activation matching (KL + cosine)
      + w_label  CE(f(e), y)                                label consistency
      + w_area   relu(mean(m) - area_target) + w_tv TV(m) + w_binary mean(m (1 - m))
      + w_robust CE(f(m * x + (1 - m) * other_fill), y)     robustness to the fill
      + w_deletion softmax(f((1 - S_a) x + S_a fill))[y]    the ranking: deleting the top pixels

with ``A`` :func:`~sparsex.losses.mask.activation_matching_loss`, ``other_fill`` uniform noise
or another image of the batch (drawn per batch), so that the explanation cannot rely on what
fills the masked-out region, and ``S_a`` the top fraction ``a ~ U(0, deletion_area_max)`` (drawn
per image) of the pixels ranked by the mask logits ``z`` (:func:`ranked_top_mask`): the destroyer
term of amortised saliency (Dabkowski & Gal 2017, :func:`~sparsex.losses.mask.deletion_loss`).
It orders the pixels outside the mask too, so that ``z`` serves as the attribution map of a
deletion curve. Masks are binarised with a straight-through estimator (forward: the
0/1 mask ``sigmoid(z) > 0.5``; backward: the gradient of ``sigmoid(z)``) after ``soft_epochs``
epochs of soft masks. At inference the mask is the hard threshold ``z > threshold`` of the mask
logits ``z``, checked (``readout="verified"``, the default): where it loses the label, the
smallest of the nested masks "top ``a`` of the pixels by ``z``" (``a`` in ``fallback_areas``)
that keeps it replaces it (:func:`verified_mask`; two batched classifier forwards, one when the
feature decoder has already run the classifier on ``x``).

- :class:`MinimalMask` learns a mask network that maps ``x`` to mask logits: one forward pass
  explains a new image. Two architectures (``MinimalMaskConfig.architecture``): ``"unet"``, a
  small U-Net on the pixels (:class:`MaskNet`), and ``"feature-decoder"``, a decoder of the
  frozen classifier's own activations (:class:`FeatureDecoder`, the classifier as encoder of
  Dabkowski & Gal 2017). ``fit`` trains it against the frozen classifier; ``save``/``load`` use the
  checkpoint format and record the classifier's weight hash, so that an explainer is never
  paired with a classifier it was not trained for.
- :class:`PerImageMask` optimises one mask per image under the same objective (many steps per
  image): slow and strong, the baseline the amortised explainer is measured against.

:class:`MinimalMask` explains the classifier's predicted class (``target`` must be ``None`` or
that class); :class:`PerImageMask` (registered as ``per-image-mask``) keeps any target class.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..backbones import input_channels
from ..checkpoint import load_checkpoint, save_checkpoint
from ..checks import check_images, check_int, check_number, check_tensor, from_settings
from ..errors import CheckpointError, InputError, SparsexError
from ..inference import check_model_dtype, class_names, resolve_targets
from ..losses.mask import activation_matching_loss, binarisation_loss, deletion_loss, mask_area_loss, total_variation_loss
from ..metrics.faithfulness import pixel_ranks
from ..perturb import blur, composite
from ..progress import progress_bar
from ..weights import module_sha256
from .base import EXPLAINERS, Explainer
from .hooks import check_layers_ran, default_layers, record_activations, resolve_layers

FAMILY = "minimal-mask"
READOUTS = ("verified", "threshold")
ARCHITECTURES = ("unet", "feature-decoder")


@dataclass
class MaskObjectiveWeights:
    """The weights of :class:`MaskObjective`'s terms (see the module docstring),
    ``area_target``: the mask area (fraction of pixels) below which the area term is zero, and
    ``deletion_area_max``: the largest fraction of pixels the deletion term removes (1: the
    fraction is uniform on ``[0, 1]``, so the term is an unbiased one-sample estimate of the
    deletion curve's AUC). The defaults are those tuned on Fashion-MNIST: a hinge at 8% of the
    pixels, pushed hard, with the label weighted 4x (masks of ~10% that keep the label on ~89% of
    images by threshold alone; an L1 area of weight 2 gave masks of ~64%), and deletion 30
    (10k images x 2 epochs, 200 test images: deletion AUC of the logit ranking 0.425 without the
    term, 0.371 at weight 10, 0.351 at 30; a range of only ``[0, 0.5]`` or 4 stratified samples
    per image did no better)."""

    match: float = 1.0  # weight of the activation-matching term, summed over the matched layers
    match_kl: float = 1.0  # within it: the KL between channel softmaxes at each location
    match_cosine: float = 1.0  # within it: the cosine distance of each image's activations
    label: float = 4.0  # weight of the label-consistency term
    area: float = 20.0  # weight of the area hinge
    tv: float = 0.5  # weight of the total variation (compactness)
    binary: float = 0.2  # weight of mean(m (1 - m)), the push towards 0/1 masks
    robust: float = 0.5  # weight of the label kept with another fill (noise or another image)
    deletion: float = 30.0  # weight of the deletion term (the top-ranked pixels removed must lose the label)
    area_target: float = 0.08  # mask area below which the area term is zero
    deletion_area_max: float = 1.0  # largest fraction of pixels the deletion term removes

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            check_number(value, f"mask objective weight {name}", 0)
        check_number(self.deletion_area_max, "mask objective deletion_area_max", 0, 1, low_open=True)


def hard_mask(logits: torch.Tensor, area_budget: float | None = None) -> torch.Tensor:
    """The 0/1 mask of mask ``logits (B, 1, H, W)``: ``logits > 0`` (``sigmoid > 0.5``), and with an
    ``area_budget`` in ``(0, 1]`` only the ``floor(budget * H * W)`` highest logits of each image
    among those (ties broken by position), so that no mask exceeds the budget."""
    mask = logits > 0
    if area_budget is not None:
        flat = logits.flatten(1)
        k = max(1, int(area_budget * flat.shape[1]))
        top = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True)
        mask = mask & top.view_as(logits)
    return mask.to(logits.dtype)


def nested_top_masks(scores: torch.Tensor, areas: list[float] | tuple[float, ...]) -> torch.Tensor:
    """Masks ``(B, K, 1, H, W)`` keeping, for each of the ``K`` areas ``a``, the ``floor(a * H * W)``
    highest-scoring pixels of ``scores (B, 1, H, W)`` (ties to the lower position): nested, since
    a larger area keeps a superset."""
    ranks = pixel_ranks(scores)  # (B, H * W), 0 = highest score
    counts = torch.tensor([int(a * ranks.shape[1]) for a in areas], device=scores.device)
    keep = ranks[:, None, :] < counts[None, :, None]
    return keep.to(scores.dtype).view(scores.shape[0], len(areas), *scores.shape[1:])


@torch.no_grad()
def verified_mask(model: nn.Module, x: torch.Tensor, logits: torch.Tensor, fill: torch.Tensor, threshold: float = 0.0,
                  fallback_areas: list[float] | tuple[float, ...] = (),
                  area_budget: float | None = None, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The hard mask ``z > threshold`` of mask ``logits z (B, 1, H, W)``, checked against ``model``.

    With ``y = argmax f(x)``, an image whose explanation ``m x + (1 - m) fill`` is classified
    ``y`` keeps its mask. Any other gets the smallest of :func:`nested_top_masks` ``(z,
    fallback_areas)`` that keeps ``y``, or keeps its mask when none does. The areas are tried in
    increasing order, each in one batched forward of the images still without a sufficient mask,
    so an image stops at its first success (the same choice as trying every area, at the cost of
    the areas it needed). The explainer's ranking of pixels is unchanged; only how many of them
    are kept varies per image, the smallest sufficient choice of a minimal explanation. Costs one
    forward of ``2B`` images (``B`` when the caller already knows ``labels``, the top-1 of
    ``model(x)``), plus one image per area tried for each image that lost its label.

    Returns the masks ``(B, 1, H, W)`` and which one each image kept ``(B,)``: -1 the thresholded
    mask (it keeps the label), ``i`` the fallback area ``fallback_areas[i]``, and
    ``len(fallback_areas)`` none (the thresholded mask stays although it loses the label).
    """
    mask = hard_mask(logits - threshold, area_budget)
    n = len(x)
    if labels is None:
        out = model(torch.cat([x, composite(x, mask, fill)]))
        labels, kept = out[:n].argmax(dim=1), out[n:].argmax(dim=1)
    else:
        kept = model(composite(x, mask, fill)).argmax(dim=1)
    pending = (kept != labels).nonzero().flatten()
    choice = torch.full((n,), -1, dtype=torch.long, device=x.device)
    choice[pending] = len(fallback_areas)
    for index, area in enumerate(fallback_areas):
        if not len(pending) or (area_budget is not None and area > area_budget):
            break
        candidate = nested_top_masks(logits[pending], [area])[:, 0]
        kept = model(composite(x[pending], candidate, fill[pending])).argmax(dim=1) == labels[pending]
        mask[pending[kept]] = candidate[kept]
        choice[pending[kept]] = index
        pending = pending[~kept]
    return mask, choice


def ranked_top_mask(logits: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """The top ``fractions[b]`` of the pixels of image ``b``, ranked by mask ``logits z (B, 1, H, W)``,
    straight-through: forward the 0/1 mask of the ``k_b = floor(fractions[b] H W)`` highest
    logits (clamped to ``1..HW-1``; ties to the lower position, :func:`pixel_ranks`), backward the
    gradient of ``sigmoid(z - q_b)`` with ``q_b`` halfway between the ``k_b``-th and
    ``(k_b+1)``-th highest logit, so that a pixel's gradient says whether it should rank higher.
    ``q_b`` moves with the logits (it is not detached): adding a constant to every logit of an
    image changes nothing, so this ranking never pushes the mask ``z > 0`` to grow or shrink."""
    flat = logits.flatten(1)
    n = flat.shape[1]
    k = (fractions.to(flat.device) * n).long().clamp(1, max(1, n - 1))[:, None]  # (B, 1)
    ordered = flat.sort(dim=1, descending=True, stable=True).values
    q = (ordered.gather(1, k - 1) + ordered.gather(1, k.clamp(max=n - 1))) / 2
    soft = torch.sigmoid(flat - q)
    hard = (pixel_ranks(flat) < k).to(flat.dtype)
    return (hard + soft - soft.detach()).view_as(logits)


def straight_through(logits: torch.Tensor, hard: bool, area_budget: float | None = None) -> torch.Tensor:
    """``sigmoid(logits)``, or (``hard``) :func:`hard_mask` with the sigmoid's gradient."""
    soft = torch.sigmoid(logits)
    if not hard:
        return soft
    return hard_mask(logits, area_budget) + soft - soft.detach()


class MaskObjective:
    """The objective shared by :class:`MinimalMask` and :class:`PerImageMask`.

    ``model`` maps images ``(B, C, H, W)`` in ``[0, 1]`` to logits; ``layers`` name the modules
    whose outputs are matched. Call :meth:`reference` once per batch (no gradient), then
    :meth:`__call__` with a mask.
    """

    def __init__(self, model: nn.Module, layers: list[str], weights: MaskObjectiveWeights, blur_sigma: float | None) -> None:
        resolve_layers(model, layers)  # unknown names fail here, not at the first batch
        self.model, self.layers, self.weights, self.blur_sigma = model, layers, weights, blur_sigma

    def reference(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        """Activations of ``x`` and the labels to keep (default: the classifier's top-1)."""
        with torch.no_grad(), record_activations(self.model, self.layers) as acts:
            logits = self.model(x)
            check_layers_ran(self.model, self.layers, acts)
            return {"x": x, "labels": logits.argmax(dim=1) if labels is None else labels,
                    "acts": {k: v.detach() for k, v in acts.items()}, "fill": blur(x, self.blur_sigma)}

    def __call__(self, ref: dict[str, Any], mask: torch.Tensor, generator: torch.Generator | None = None,
                 mask_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The terms for ``mask (B, 1, H, W)``; ``mask_logits`` are the logits it came from, which
        the deletion term ranks pixels by (needed when its weight is not 0)."""
        w, x, y = self.weights, ref["x"], ref["labels"]
        explanation = composite(x, mask, ref["fill"])
        with record_activations(self.model, self.layers) as acts:
            logits = self.model(explanation)
            explained = dict(acts)
        terms = {
            "match": sum(activation_matching_loss(ref["acts"][k], explained[k], w.match_kl, w.match_cosine) for k in self.layers),
            "label": F.cross_entropy(logits, y),
            "area": mask_area_loss(mask, w.area_target),
            "tv": total_variation_loss(mask),
            "binary": binarisation_loss(mask),
        }
        if w.robust > 0:
            if torch.rand((), generator=generator) < 0.5:
                other = torch.rand(x.shape, generator=generator).to(x)
            else:
                other = x.roll(1, dims=0)
            terms["robust"] = F.cross_entropy(self.model(mask * x + (1 - mask) * other), y)
        if w.deletion > 0:
            if mask_logits is None:
                raise SparsexError("the deletion term ranks pixels by the mask logits: pass mask_logits=")
            removed = ranked_top_mask(mask_logits, torch.rand(len(x), generator=generator) * w.deletion_area_max)
            terms["deletion"] = deletion_loss(self.model(composite(x, 1 - removed, ref["fill"])), y)
        terms["total"] = sum(getattr(w, k) * v for k, v in terms.items())
        terms["mask_area"] = mask.mean().detach()
        terms["kept"] = (logits.argmax(dim=1) == y).float().mean().detach()
        return terms


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, GroupNorm over all channels, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(1, cout), nn.ReLU(inplace=True))


class MaskNet(nn.Module):
    """A small U-Net: images ``(B, C, H, W)`` -> mask logits ``(B, 1, H, W)``; three stride-2
    levels of width ``w, 2w, 4w, 4w``, skip connections, any input size."""

    def __init__(self, in_chans: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.down = nn.ModuleList([conv_block(in_chans, w), conv_block(w, 2 * w, 2), conv_block(2 * w, 4 * w, 2),
                                   conv_block(4 * w, 4 * w, 2)])
        self.up = nn.ModuleList([conv_block(8 * w, 2 * w), conv_block(4 * w, w)])
        self.out = nn.Conv2d(2 * w, 1, 3, padding=1)
        nn.init.constant_(self.out.bias, 2.0)  # start from "keep everything" (sigmoid(2) = 0.88)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x - 0.5
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        h = skips.pop()
        for layer in self.up:
            skip = skips.pop()
            h = layer(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        skip = skips.pop()
        return self.out(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))


def gradient_map(grad: torch.Tensor, x: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``sum_c grad_c (x_c - fill_c)`` of ``(B, C, H, W)`` tensors, divided per image by its largest
    absolute value (an all-zero map stays zero): ``(B, 1, H, W)`` in ``[-1, 1]``, the input
    :class:`FeatureDecoder` reads with ``gradient``."""
    pixels = (grad * (x - fill)).sum(dim=1, keepdim=True)
    return pixels / pixels.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(pixels.dtype).tiny)[:, None, None, None]


class FeatureDecoder(nn.Module):
    """Mask logits ``(B, 1, H, W)`` decoded from the frozen classifier's own activations: the
    classifier is the encoder (Dabkowski & Gal 2017, "Real Time Image Saliency for Black Box
    Classifiers", NeurIPS; their masking model reads a pretrained ResNet's feature maps).

    One forward of ``model`` (no gradient) records the maps ``a_l (B, C_l, h_l, w_l)`` of ``layers``;
    with ``w`` = ``width`` and ``(h*, w*)`` the largest of their grids::

        h = sum_l up_{(h*, w*)}(relu(GN(P_l a_l)))             P_l: a 1x1 convolution C_l -> w
        h = conv(conv(h))                                     two 3x3 blocks of width w
        z = conv3x3(conv([up_{(H, W)}(h), conv(x - 1/2)]))    the image joins at input resolution

    (``up`` bilinear, ``conv`` a 3x3 convolution + GroupNorm + ReLU). With ``gradient``, the same
    forward is followed by one backward of the predicted class's logit ``f_y``, and the image
    block reads one more channel, the gradient map (:func:`gradient_map`)::

        g = sum_c d f_y / d x_c (x) * (x_c - fill_c),    g / max |g|  (per image)

    with ``fill`` the blurred image (``blur_sigma``): the one-step estimate of integrated
    gradients from the fill, the deletion curve's baseline (Sundararajan et al. 2017, Eq. 1 with
    one step at ``alpha = 1``). Only the decoder has
    parameters: ``model`` is held outside the module tree, so it is neither trained nor saved with
    the decoder, and must be on the decoder's device. The layers are probed at construction with
    one forward of a blank ``probe_size`` image: a layer that does not run, or whose output is not
    a ``(B, C, h, w)`` map, is a one-line error there.
    """

    def __init__(self, model: nn.Module, layers: list[str], in_chans: int, width: int = 16,
                 probe_size: tuple[int, int] = (32, 32), gradient: bool = False, blur_sigma: float | None = None) -> None:
        super().__init__()
        self.classifier = (model,)  # in a tuple, so that it is not a submodule
        self.layers = list(layers)
        self.gradient, self.blur_sigma = gradient, blur_sigma
        reference = next(model.parameters(), None)
        probe = torch.zeros(1, in_chans, *probe_size, device=reference.device if reference is not None else None,
                            dtype=reference.dtype if reference is not None else None)
        channels = [maps.shape[1] for maps in self._activations(probe)[0]]
        self.project = nn.ModuleList([nn.Sequential(nn.Conv2d(c, width, 1), nn.GroupNorm(1, width), nn.ReLU(inplace=True))
                                      for c in channels])
        self.fuse = nn.Sequential(conv_block(width, width), conv_block(width, width))
        self.image = conv_block(in_chans + int(gradient), width)
        self.out = nn.Sequential(conv_block(2 * width, width), nn.Conv2d(width, 1, 3, padding=1))
        nn.init.constant_(self.out[-1].bias, 2.0)  # start from "keep everything" (sigmoid(2) = 0.88)

    def _activations(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """The maps of ``self.layers`` on ``x``, in their order, the classifier's output, and (with
        ``gradient``, else None) the gradient map of the predicted class, from one forward (and one
        backward) of the classifier. Nothing here carries a gradient to the decoder."""
        model = self.classifier[0]
        with torch.set_grad_enabled(self.gradient):
            inputs = x.detach().requires_grad_(self.gradient)
            with record_activations(model, self.layers) as acts:
                output = model(inputs)
                check_layers_ran(model, self.layers, acts)
                maps = [acts[name].detach() for name in self.layers]
            for name, value in zip(self.layers, maps):
                if not isinstance(value, torch.Tensor) or value.dim() != 4:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise InputError(f"the feature decoder reads (B, C, h, w) maps; layer {name!r} gives {shape}: "
                                     f"name convolutional layers (decoder_layers)")
            pixels = None
            if self.gradient:
                (grad,) = torch.autograd.grad(output.gather(1, output.argmax(dim=1, keepdim=True)).sum(), inputs)
                pixels = gradient_map(grad, x.detach(), blur(x.detach(), self.blur_sigma))
        return maps, output.detach(), pixels

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask logits ``(B, 1, H, W)`` of ``x`` and the classifier's output on ``x`` (read on the
        way: :class:`MinimalMask` checks its masks against its labels without another forward)."""
        maps, output, pixels = self._activations(x)
        grid = max((m.shape[-2:] for m in maps), key=lambda size: size[0] * size[1])
        h = sum(F.interpolate(project(m), size=grid, mode="bilinear", align_corners=False)
                for project, m in zip(self.project, maps))
        h = F.interpolate(self.fuse(h), size=x.shape[-2:], mode="bilinear", align_corners=False)
        image = x - 0.5 if pixels is None else torch.cat([x - 0.5, pixels], 1)
        return self.out(torch.cat([h, self.image(image)], 1)), output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(x)[0]


@dataclass
class MinimalMaskConfig:
    """Settings of :class:`MinimalMask`: ``layers`` to match (None: three convolutions spread over
    the model, :func:`~sparsex.explainers.hooks.default_layers`), the mask network's
    ``architecture`` (``"unet"``: :class:`MaskNet` on the pixels; ``"feature-decoder"``:
    :class:`FeatureDecoder` on the classifier's activations at ``decoder_layers``, None: the
    matched ``layers``, and with ``decoder_gradient`` also on the predicted logit's gradient map)
    and its ``width``, training
    ``epochs``/``lr``/``batch_size``/``soft_epochs``, the objective ``weights``, the blur
    ``blur_sigma`` of the fill (None: the default of :func:`sparsex.perturb.blur`), ``seed``, and
    ``area_budget``: None, or the largest mask area allowed (a fraction of the pixels; masks keep
    at most the top ``area_budget`` fraction of their logits, in training and at inference, as the
    fixed-area masks of extremal perturbations, Fong et al. 2019).

    Inference: ``threshold`` is the mask-logit threshold of the hard mask (0: ``sigmoid > 0.5``;
    higher gives smaller masks), chosen after training on the first ``calibrate`` training images
    by :meth:`MinimalMask.calibrate_threshold` (``sparsex train minimal-mask``'s last stage; 0 keeps
    the given threshold); ``readout`` is ``"threshold"`` (the hard mask as is) or
    ``"verified"`` (:func:`verified_mask`: the hard mask where it keeps the label, else the
    smallest of the top-``a`` masks, ``a`` in ``fallback_areas``, that does). The same stage then
    keeps only the fallback areas that rescue at least ``fallback_min_rescue`` of the calibration
    images, and the largest (:meth:`MinimalMask.prune_fallback_areas`; 0 keeps them all)."""

    layers: list[str] | None = None  # classifier layers to match, comma-separated (default: 3 convolutions)
    architecture: str = "unet"  # the mask network: unet (on the pixels) or feature-decoder (on the classifier's activations)
    decoder_layers: list[str] | None = None  # classifier layers the feature decoder reads (default: the matched layers)
    decoder_gradient: bool = False  # the feature decoder also reads the predicted logit's gradient x (image - fill) (one backward)
    width: int = 16  # channels of the U-Net's first level, or of the feature decoder
    epochs: int = 10  # training epochs
    lr: float = 2e-3  # learning rate
    batch_size: int = 32  # images per training batch
    soft_epochs: int = 1  # first epochs with soft (sigmoid) masks, then straight-through hard masks
    blur_sigma: float | None = None  # blur of the fill (default: sparsex.perturb.blur's)
    seed: int = 0  # seed of the initialisation, batches and noise
    area_budget: float | None = None  # largest mask area allowed, a fraction of the pixels (default: none)
    threshold: float = 0.0  # mask-logit threshold of the hard mask (chosen by the calibrate stage)
    calibrate: int = 200  # training images the calibrate stage chooses the threshold on (0: skip the stage)
    readout: str = "verified"  # verified (checked against the classifier, fallbacks) or threshold
    fallback_areas: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.15, 0.2, 0.3])  # mask areas the verified readout falls back to
    fallback_min_rescue: float = 0.01  # keep a fallback area that rescues at least this fraction of calibration images
    weights: MaskObjectiveWeights = field(default_factory=MaskObjectiveWeights)

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = from_settings(MaskObjectiveWeights, self.weights, "mask objective")
        check_area_budget(self.area_budget)
        if self.architecture not in ARCHITECTURES:
            raise SparsexError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        if not isinstance(self.decoder_gradient, bool):
            raise SparsexError(f"decoder_gradient must be true or false, got {self.decoder_gradient!r}")
        if self.decoder_gradient and self.architecture != "feature-decoder":
            raise SparsexError("decoder_gradient is an input of the feature decoder: set architecture to feature-decoder")
        for name in ("layers", "decoder_layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (list, tuple)) or not value
                                      or not all(isinstance(v, str) and v for v in value)):
                raise SparsexError(f"{name} must be a non-empty list of layer names or None (the default), got {value!r}")
        for name in ("width", "epochs", "batch_size", "soft_epochs", "calibrate", "seed"):
            check_int(getattr(self, name), f"minimal mask setting {name}", 0 if name in ("soft_epochs", "calibrate", "seed") else 1)
        check_number(self.lr, "lr", 0, 10, low_open=True, high_open=True)
        check_number(self.threshold, "threshold (a mask logit)")
        if self.readout not in READOUTS:
            raise SparsexError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        areas = self.fallback_areas
        if not isinstance(areas, (list, tuple)) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a <= 1 for a in areas) or list(areas) != sorted(areas):
            raise SparsexError(f"fallback_areas must be a list of increasing numbers in (0, 1], got {areas!r}")
        self.fallback_areas = [float(a) for a in areas]
        check_number(self.fallback_min_rescue, "fallback_min_rescue", 0, 1)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "MinimalMaskConfig":
        return from_settings(cls, settings, "minimal mask")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_area_budget(area_budget: float | None) -> float | None:
    return check_number(area_budget, "area_budget", 0, 1, low_open=True, none_ok=True)


def _check_target(target: Any, logits: torch.Tensor) -> None:
    """:class:`MinimalMask` explains the predicted class: ``target`` must be None or equal to it
    (checked like every explainer's target, :func:`~sparsex.inference.resolve_targets`)."""
    if target is None:
        return
    target, predicted = resolve_targets(logits, target), logits.argmax(dim=1)
    if (target != predicted).any():
        raise InputError("mask explainers explain the classifier's predicted class; target differs from the prediction "
                         f"on {int((target != predicted).sum())} of {len(predicted)} images (pass target=None)")


def _prepare(x: torch.Tensor, size: tuple[int, int] | None, channels: int | None) -> torch.Tensor:
    """Check images against the size and channels an explainer was trained on."""
    check_tensor(x, "images", "(B, C, H, W)", nonempty=True)
    check_images(x, channels=channels)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise InputError(f"images are {x.shape[-2]}x{x.shape[-1]}; this explainer was trained on {size[0]}x{size[1]} images "
                         f"(resize them first, e.g. torch.nn.functional.interpolate)")
    return x


class MinimalMask(Explainer):
    """The amortised mask explainer (see the module docstring).

    ``MinimalMask(model, config)``; ``fit(images)``; ``attribute(x)`` -> binary masks
    ``(B, 1, H, W)``; ``save(path)`` / ``MinimalMask.load(path, model)``. Registered as the
    explainer ``minimal-mask``, made from a trained run: ``create_explainer("minimal-mask", model,
    checkpoint=RUN)``. Its :meth:`attribute` is its own (one forward of the mask network, then the readout), not
    :meth:`Explainer.attribute`'s gradient-enabled path.
    """

    name = "minimal-mask"
    explains_predicted_class_only = True

    def __init__(self, model: nn.Module, config: MinimalMaskConfig | None = None, in_chans: int | None = None) -> None:
        self.model = model.eval().requires_grad_(False)
        self.config = config or MinimalMaskConfig()
        if self.config.layers is None:
            self.config.layers = default_layers(model)
        self.objective = MaskObjective(model, self.config.layers, self.config.weights, self.config.blur_sigma)
        torch.manual_seed(self.config.seed)
        self.in_chans = in_chans or input_channels(model)
        self.net = self._mask_network()
        self.epochs_done = 0
        self.image_size: tuple[int, int] | None = None  # set by the first fit (or a loaded checkpoint)

    def _mask_network(self) -> nn.Module:
        """The U-Net, or the feature decoder of ``config.decoder_layers`` (filled in: the matched layers)."""
        cfg = self.config
        if cfg.architecture == "unet":
            return MaskNet(self.in_chans, cfg.width)
        cfg.decoder_layers = list(cfg.decoder_layers or cfg.layers)
        return FeatureDecoder(self.model, cfg.decoder_layers, self.in_chans, cfg.width,
                              tuple(getattr(self.model, "input_size", None) or (32, 32)), cfg.decoder_gradient, cfg.blur_sigma)

    @torch.no_grad()
    def mask_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The mask logits ``z (B, 1, H, W)`` of ``inputs``: the explainer's ranking of the pixels
        (the attribution map of a deletion or insertion curve; unlike ``sigmoid(z)`` it never ties
        in float32), of which the binary mask keeps those above ``config.threshold``."""
        x = _prepare(inputs, self.image_size, self.in_chans)
        check_model_dtype(self.net, x)
        self.net.eval()
        return self.net(x)

    def fit_epoch(self, images: torch.Tensor, progress: bool = True, desc: str = "mask explainer") -> dict[str, float]:
        """One pass over ``images (N, C, H, W)``; returns the epoch's mean loss terms. A fresh Adam
        per epoch and batches shuffled from ``seed + epoch``, so a run resumed between epochs equals
        an uninterrupted one. Under torchrun the mask network trains data-parallel (each rank its part of
        every global batch, :func:`sparsex.distributed.local_batches`; the fill noise is drawn per
        rank) and the returned terms are reduced over the ranks."""
        _prepare(images[:1], self.image_size, self.in_chans)
        self.image_size = tuple(images.shape[-2:])
        cfg, epoch = self.config, self.epochs_done
        distributed.check_batch_size(cfg.batch_size)
        net = distributed.wrap(self.net)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(cfg.seed + epoch)
        order = torch.randperm(len(images), generator=generator)
        if distributed.world_size() > 1:  # the same order on every rank, then each rank its own noise
            generator.manual_seed((cfg.seed + epoch) * distributed.world_size() + distributed.rank())
        sums: dict[str, float] = {}
        self.net.train()
        batches = list(distributed.local_batches(order, cfg.batch_size))
        for part in progress_bar(batches, desc=f"{desc} epoch {epoch + 1}", unit="batch", leave=False,
                         disable=not (progress and distributed.is_main())):
            ref = self.objective.reference(images[part.indices])
            logits = net(ref["x"])
            mask = straight_through(logits, hard=epoch >= cfg.soft_epochs, area_budget=cfg.area_budget)
            terms = self.objective(ref, mask, generator, logits)
            optimiser.zero_grad(set_to_none=True)
            (terms["total"] if part.weight == 1.0 else terms["total"] * part.weight).backward()
            optimiser.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * part.count
        self.net.eval()
        self.epochs_done += 1
        return {k: v / len(images) for k, v in distributed.all_reduce_sum(sums).items()}

    def fit(self, images: torch.Tensor, epochs: int | None = None, progress: bool = True) -> list[dict[str, float]]:
        """Train for ``epochs`` (default ``config.epochs``) on ``images (N, C, H, W)`` in ``[0, 1]``."""
        return [self.fit_epoch(images, progress) for _ in range(epochs if epochs is not None else self.config.epochs)]

    @torch.no_grad()
    def attribute(self, inputs: torch.Tensor, target: Any = None, binary: bool = True) -> torch.Tensor:
        """Masks ``(B, 1, H, W)`` for ``inputs``: 0/1 (``binary``, read out as ``config.readout``
        says: one forward of the mask net, plus the classifier's check when ``"verified"``) or the
        mask probabilities ``sigmoid(z)`` (to rank pixels, prefer :meth:`mask_logits`, which never
        ties)."""
        x = _prepare(inputs, self.image_size, self.in_chans)
        check_model_dtype(self.net, x)
        self.net.eval()
        logits, output = self._logits_and_output(x)
        if target is not None:
            _check_target(target, output if output is not None else self.model(x))
        cfg = self.config
        if not binary:
            return torch.sigmoid(logits)
        if cfg.readout == "threshold":
            return hard_mask(logits - cfg.threshold, cfg.area_budget)
        return self._verified(x, logits, output)[0]

    def _logits_and_output(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mask logits of ``x``, and the classifier's output on ``x`` when the mask network
        computed it on the way (the feature decoder), else None."""
        if isinstance(self.net, FeatureDecoder):
            return self.net.decode(x)
        return self.net(x), None

    def _verified(self, x: torch.Tensor, logits: torch.Tensor,
                  output: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`verified_mask` with this explainer's settings (the labels from ``output``, the
        classifier's output on ``x``, when given)."""
        cfg = self.config
        return verified_mask(self.model, x, logits, blur(x, cfg.blur_sigma), cfg.threshold, cfg.fallback_areas,
                             cfg.area_budget, labels=None if output is None else output.argmax(dim=1))

    @torch.no_grad()
    def calibrate_threshold(self, images: torch.Tensor, thresholds: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
                            tolerance: float = 0.01, batch_size: int = 32) -> dict[str, Any]:
        """Choose ``config.threshold`` on ``images (N, C, H, W)`` (training or held-out images, never
        the test split): with the current readout, the threshold of the smallest mean mask area
        among those whose sufficiency is within ``tolerance`` of the best one. Sets it and returns
        ``{"threshold": t, "table": [{"threshold", "area", "sufficiency"}, ...]}``."""
        from ..metrics.faithfulness import sufficiency

        _prepare(images, self.image_size, self.in_chans)
        check_number(tolerance, "tolerance", 0, 1)
        if not thresholds:
            raise InputError("thresholds must name at least one mask-logit threshold")
        table = []
        for threshold in thresholds:
            self.config.threshold = check_number(threshold, "threshold (a mask logit)")
            masks = torch.cat([self.attribute(chunk) for chunk in images.split(batch_size)])
            table.append({"threshold": self.config.threshold, "area": float(masks.mean()),
                          "sufficiency": sufficiency(self.model, images, masks, internal_batch_size=batch_size)})
        best = max(row["sufficiency"] for row in table)
        chosen = min((row for row in table if row["sufficiency"] >= best - tolerance), key=lambda row: row["area"])
        self.config.threshold = chosen["threshold"]
        return {"threshold": chosen["threshold"], "table": table}

    @torch.no_grad()
    def prune_fallback_areas(self, images: torch.Tensor, min_rescue: float | None = None,
                             batch_size: int = 32) -> dict[str, Any]:
        """Keep the fallback areas worth their forward, judged on ``images (N, C, H, W)`` (training or
        held-out images, never the test split) at the current threshold. Each image that loses its
        label pays one classifier forward per area tried, smallest first, until one keeps it; an
        area that rescues almost no image costs every such image a forward and only spares the few
        it rescues the next larger mask. Keeps the areas that are the first to keep the label for
        at least ``min_rescue`` (default ``config.fallback_min_rescue``) of the images, and always
        the largest (the last resort). Sets ``config.fallback_areas`` and returns
        ``{"fallback_areas": kept, "rescued": [{"area", "images"}, ...], "unrescued": n}``
        (``images``: how many of the images each area rescued; ``n``: how many lose the label with
        every area)."""
        x = _prepare(images, self.image_size, self.in_chans)
        check_int(batch_size, "batch_size", 1)
        min_rescue = self.config.fallback_min_rescue if min_rescue is None else check_number(min_rescue, "min_rescue", 0, 1)
        areas = self.config.fallback_areas
        rescued = torch.zeros(len(areas) + 1, dtype=torch.long)
        self.net.eval()
        for chunk in x.split(batch_size):
            choice = self._verified(chunk, *self._logits_and_output(chunk))[1]
            rescued += torch.bincount(choice[choice >= 0].cpu(), minlength=len(areas) + 1)
        kept = [a for a, n in zip(areas, rescued.tolist()) if n >= min_rescue * len(x) or a == areas[-1]]
        self.config.fallback_areas = kept
        return {"fallback_areas": kept, "rescued": [{"area": a, "images": n} for a, n in zip(areas, rescued.tolist())],
                "unrescued": int(rescued[-1])}

    def explain(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary masks ``m`` and explanations ``e = m x + (1 - m) blur(x)`` for ``inputs``."""
        mask = self.attribute(inputs)
        return mask, composite(inputs, mask, blur(inputs, self.config.blur_sigma))

    def checkpoint_config(self, **extra: Any) -> dict[str, Any]:
        """What a checkpoint of this explainer records: its config, the classifier's weight hash,
        the epochs done, and ``extra`` (e.g. the classifier's folder)."""
        return {"explainer": self.config.to_dict(), "in_chans": self.in_chans, "image_size": self.image_size,
                "classifier_sha256": module_sha256(self.model), "epochs_done": self.epochs_done, **extra}

    def save(self, path: str | os.PathLike, overwrite: bool = False, **extra: Any) -> Path:
        """Checkpoint the mask network (see :meth:`checkpoint_config`; its architecture is in the config)."""
        return save_checkpoint(path, self.net, FAMILY, self.checkpoint_config(**extra), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module) -> "MinimalMask":
        """Load a saved explainer (a checkpoint folder, or a ``sparsex train minimal-mask`` run folder)
        for ``model``; refuse one trained for another classifier."""
        checkpoint = load_checkpoint(path, family=FAMILY)
        stored = checkpoint.config.get("classifier_sha256")
        if stored != module_sha256(model):
            raise CheckpointError(f"explainer {path} was trained for another classifier (weights hash "
                                  f"{str(stored)[:12]}..., this one {module_sha256(model)[:12]}...); train one for it")
        explainer = cls(model, MinimalMaskConfig.from_dict(checkpoint.config["explainer"]), checkpoint.config["in_chans"])
        checkpoint.load_into(explainer.net)
        explainer.net.to(next(model.parameters()).device).eval()
        explainer.epochs_done = int(checkpoint.config.get("epochs_done", 0))
        size = checkpoint.config.get("image_size")
        explainer.image_size = tuple(size) if size else None
        return explainer


@EXPLAINERS.register("minimal-mask", description="amortised minimal mask of a trained run (checkpoint=RUN): "
                                                  "one forward per image, verified to keep the label")
def load_minimal_mask(model: nn.Module, checkpoint: str | os.PathLike) -> MinimalMask:
    """The explainer of the ``sparsex train minimal-mask`` run (or checkpoint folder) ``checkpoint``
    for ``model``, which must be the classifier it was trained for (weight hash checked)."""
    return MinimalMask.load(checkpoint, model)


def perimage_grid_factor(height: int, width: int, cells: int = 32) -> int:
    """How many times coarser than a ``height x width`` image :class:`PerImageMask`'s mask grid is by
    default: ``max(1, min(H, W) // cells)``, so about ``cells`` grid cells along the shorter side
    (the full resolution below ``2 * cells`` pixels: 1 at 28 px, 2 at 64 px, 4 at 128 px, 7 at
    224 px). A coarser grid is a smoothness prior, but it also caps how finely the mask logits rank
    the pixels: on Fashion-MNIST (28 px) a 4x coarser grid (7 x 7 cells) gave a deletion AUC of
    0.294 against 0.145 at full resolution (32 test images, 150 steps, the benchmark's weights)."""
    return max(1, min(height, width) // cells)


@EXPLAINERS.register("per-image-mask", description="minimal mask optimised per image (activation matching objective)")
class PerImageMask(Explainer):
    """One mask per image, optimised under :class:`MaskObjective` with Adam for ``steps`` steps
    (straight-through after the first half), keeping ``target`` (default: the top-1 class). The
    mask logits live on a grid ``downsample`` times coarser than the image and are upsampled
    bilinearly (a smoothness prior, and fewer unknowns); ``None`` (the default) picks
    :func:`perimage_grid_factor`, about 32 cells along the shorter side. ``internal_batch_size``
    images are optimised together. ``attribute`` returns 0/1 masks (``binary``; at most
    ``area_budget`` of the pixels when set, see :func:`hard_mask`) or the mask probabilities."""

    name = "per-image-mask"

    def __init__(self, model: nn.Module, layers: list[str] | None = None, steps: int = 150, lr: float = 0.1,
                 downsample: int | None = None, weights: MaskObjectiveWeights | dict | None = None,
                 blur_sigma: float | None = None, internal_batch_size: int = 32, seed: int = 0, binary: bool = True,
                 area_budget: float | None = None) -> None:
        for name, value in (("steps", steps), ("internal_batch_size", internal_batch_size)):
            check_int(value, name, 1)
        check_int(downsample, "downsample", 1, none_ok=True)
        check_number(lr, "lr", 0, 10, low_open=True, high_open=True)
        check_int(seed, "seed", 0)
        if layers is not None and (isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers):
            raise InputError(f"layers must be a non-empty list of layer names or None (the default), got {layers!r}")
        super().__init__(model)
        if isinstance(weights, dict):
            weights = from_settings(MaskObjectiveWeights, weights, "mask objective")
        self.layers = layers or default_layers(model)
        self.objective = MaskObjective(model, self.layers, weights or MaskObjectiveWeights(), blur_sigma)
        self.steps, self.lr, self.downsample, self.seed, self.binary = steps, lr, downsample, seed, binary
        self.area_budget = check_area_budget(area_budget)
        self.internal_batch_size = internal_batch_size

    def _optimise(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        factor = self.downsample or perimage_grid_factor(h, w)
        logits = torch.full((len(x), 1, max(1, h // factor), max(1, w // factor)), 2.0,
                            device=x.device, requires_grad=True)
        optimiser = torch.optim.Adam([logits], lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        ref = self.objective.reference(x, labels)
        for step in range(self.steps):
            up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            terms = self.objective(ref, straight_through(up, hard=step >= self.steps // 2, area_budget=self.area_budget),
                                   generator, up)
            optimiser.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimiser.step()
        return F.interpolate(logits.detach(), size=(h, w), mode="bilinear", align_corners=False)

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        batch = self.internal_batch_size
        logits = torch.cat([self._optimise(x, y) for x, y in zip(inputs.split(batch), targets.split(batch))])
        return hard_mask(logits, self.area_budget) if self.binary else torch.sigmoid(logits)


def load_explainer_classifier(path: str | os.PathLike,
                              device: str | torch.device = "cpu") -> tuple["MinimalMask", nn.Module]:
    """The explainer saved at ``path`` and the classifier it names (``config.model``: its spec and
    options; runs before 0.2 name a classifier run folder, ``config.classifier``), on ``device``."""
    from ..models.specs import load_classifier

    checkpoint = load_checkpoint(path, family=FAMILY)
    spec = checkpoint.config.get("model") or (
        {"spec": checkpoint.config["classifier"]} if checkpoint.config.get("classifier") else None)
    if not isinstance(spec, dict) or not spec.get("spec"):
        raise CheckpointError(f"explainer {path} does not name its classifier (config.model); load it with "
                              f"MinimalMask.load(path, model)")
    model = load_classifier(spec["spec"], weights=spec.get("weights"), num_classes=spec.get("num_classes"),
                            image_size=spec.get("image_size")).to(device)
    return MinimalMask.load(checkpoint.path, model), model


def explain_file(explainer_path: str | os.PathLike, image: str | os.PathLike, out: str | os.PathLike,
                 overwrite: bool = False, top: int = 3, device: str | torch.device = "cpu") -> Path:
    """Explain one image file with a saved :class:`MinimalMask` (the classifier it names is loaded
    and its hash checked). The image is resized to the size the explainer was trained on. Writes,
    atomically, ``image.png``, ``mask.png``, ``explanation.png`` (``m * x + (1 - m) * blur(x)``)
    and ``explanation.json`` (mask area, whether it is empty, the top classes on ``x`` and on the
    explanation, whether the label is kept)."""
    from ..data.base import read_image_tensor, save_image_png
    from ..io import atomic_dir, check_output_dir, write_json

    check_output_dir(out, overwrite)
    explainer, model = load_explainer_classifier(explainer_path, device)
    x = read_image_tensor(image, explainer.in_chans, explainer.image_size).to(device)
    mask, explanation = explainer.explain(x)
    with torch.no_grad():
        probs = torch.softmax(model(torch.cat([x, explanation])), dim=1)
    classes = class_names(model, probs.shape[1])

    def ranked(p: torch.Tensor) -> list[dict[str, Any]]:
        values, indices = p.topk(min(top, len(p)))
        return [{"class": int(i), "name": classes[int(i)], "probability": round(float(v), 4)} for v, i in zip(values, indices)]

    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_image_png(x[0], tmp / "image.png")
        save_image_png(mask[0], tmp / "mask.png")
        save_image_png(explanation[0], tmp / "explanation.png")
        write_json(tmp / "explanation.json", {
            "image": str(image), "explainer": str(explainer_path), "mask_area": round(float(mask.mean()), 4),
            "mask_empty": not bool(mask.any()),
            "prediction_on_image": ranked(probs[0]), "prediction_on_explanation": ranked(probs[1]),
            "label_kept": bool(probs[0].argmax() == probs[1].argmax()),
        })
    return Path(out)
