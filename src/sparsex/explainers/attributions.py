"""Classic attribution methods as registered explainers, each a thin wrapper around captum.

=========================  ===========================================  ===============================
name                       captum method                                channels -> (B, 1, H, W)
=========================  ===========================================  ===============================
``integrated-gradients``   ``IntegratedGradients`` (Sundararajan 2017)  sum (keeps completeness: the
                                                                        map sums to about
                                                                        ``f(x) - f(baseline)``); signed
``saliency``               ``Saliency`` with ``abs=True`` (Simonyan     max of ``|d logit / d x|`` over
                           2014)                                        channels (as Simonyan et al.)
``gradcam``                ``LayerGradCam`` (Selvaraju 2017) on a conv  one map already (channel-weighted
                           layer, upsampled by                          sum inside Grad-CAM); ReLU,
                           ``LayerAttribution.interpolate``             non-negative
``occlusion``              ``Occlusion`` (Zeiler & Fergus 2014)         mean (the window spans all
                                                                        channels, so they are equal);
                                                                        signed
=========================  ===========================================  ===============================

Every explainer explains the *logit* of the target class (captum's convention). Baselines
(``"blur"``: the blurred image of :func:`sparsex.perturb.blur`, ``"zeros"``, or a number)
come from :func:`sparsex.perturb.make_baseline`. ``internal_batch_size`` bounds how many images
go through the model in one forward pass.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterator

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn

from ..checks import check_int, check_number
from ..errors import InputError
from ..inference import DEFAULT_BATCH, choice
from ..perturb import BASELINES, check_sigma, make_baseline
from .base import EXPLAINERS, Explainer

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
INTERPOLATE_MODES = ("bilinear", "nearest", "bicubic", "area")


def _check_baseline(baseline: Any) -> str | float:
    if isinstance(baseline, str):
        return choice(baseline, "baseline", BASELINES)
    return check_number(baseline, f"baseline (one of {', '.join(BASELINES)} or a number)")


def _chunks(n: int, size: int | None) -> Iterator[slice]:
    step = n if size is None else size
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


@EXPLAINERS.register("integrated-gradients", description="captum IntegratedGradients from the blurred image (or zeros); channels summed")
class IntegratedGradientsExplainer(Explainer):
    """Integrated gradients: ``(x - x') * mean_{a in (0, 1]} grad f_c(x' + a (x - x'))``,
    summed over channels.

    ``n_steps`` points of the path integral (``method``: captum's quadrature, Gauss-Legendre by
    default); ``baseline`` ``x'``: ``"blur"`` (the blurred image, ``sigma`` pixels, default
    ``max(H, W) / 16``), ``"zeros"`` or a constant; ``internal_batch_size`` images per
    forward/backward pass (``None``: all ``B * n_steps`` at once).
    """

    name = "integrated-gradients"

    def __init__(self, model: nn.Module, n_steps: int = 50, baseline: str | float = "blur", sigma: float | None = None,
                 method: str = "gausslegendre", internal_batch_size: int | None = DEFAULT_BATCH) -> None:
        super().__init__(model)
        self.n_steps = check_int(n_steps, "n_steps", 1)
        self.baseline = _check_baseline(baseline)
        self.sigma = check_sigma(sigma)
        self.method = choice(method, "method", IG_METHODS)
        self.internal_batch_size = check_int(internal_batch_size, "internal_batch_size", 1, none_ok=True)
        self._captum = IntegratedGradients(self.model)

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        maps = []
        for part in _chunks(inputs.shape[0], self.internal_batch_size):
            x = inputs[part]
            attr = self._captum.attribute(x, baselines=make_baseline(x, self.baseline, self.sigma), target=targets[part],
                                          n_steps=self.n_steps, method=self.method,
                                          internal_batch_size=self.internal_batch_size)
            maps.append(attr.sum(dim=1, keepdim=True))
        return torch.cat(maps)


@EXPLAINERS.register("saliency", description="captum Saliency: |gradient of the logit|, max over channels")
class SaliencyExplainer(Explainer):
    """Saliency: ``max_channels |d f_c(x) / d x|`` (Simonyan et al. 2014), non-negative."""

    name = "saliency"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self._captum = Saliency(self.model)

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # a fresh leaf that requires grad, so captum does not touch (or warn about) the caller's tensor
        attr = self._captum.attribute(inputs.detach().requires_grad_(), target=targets, abs=True)
        return attr.amax(dim=1, keepdim=True)


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names (as in ``model.named_modules()``) of the model's ``nn.Conv2d`` layers, in order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


@EXPLAINERS.register("gradcam", description="captum LayerGradCam on a conv layer (default the last), upsampled, ReLU")
class GradCAMExplainer(Explainer):
    """Grad-CAM: ``ReLU(sum_k alpha_k A_k)`` with ``A`` the output ``(B, k, h, w)`` of ``layer``
    and ``alpha_k`` the spatial mean of ``d f_c / d A_k``, upsampled to ``(H, W)`` with
    ``interpolate_mode`` (captum's ``LayerAttribution.interpolate``), then ReLU again.

    ``layer``: a module name from ``model.named_modules()`` (default: the last ``nn.Conv2d`` of
    the feature extractor, ``model.backbone`` where the model has one, as Grad-CAM is defined; a
    prototype head's own convolutions may be applied functionally and never run as modules);
    a name that does not exist raises a one-line error listing the conv layers.
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: str | None = None, interpolate_mode: str = "bilinear") -> None:
        super().__init__(model)
        convs = conv_layer_names(self.model)
        modules = dict(self.model.named_modules())
        if layer is None:
            if not convs:
                raise InputError("gradcam needs a conv layer, but the model has no nn.Conv2d; name a layer with a "
                                 "(B, C, h, w) output as layer=")
            extractor = [n for n in convs if n.startswith("backbone.")] if hasattr(self.model, "backbone") else []
            layer = (extractor or convs)[-1]
        elif not isinstance(layer, str) or layer not in modules:
            close = difflib.get_close_matches(str(layer), convs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown layer {layer!r} for gradcam{hint}; conv layers of this model: "
                             f"{', '.join(convs) or '(none)'}")
        self.layer = layer
        self.interpolate_mode = choice(interpolate_mode, "interpolate_mode", INTERPOLATE_MODES)
        self._captum = LayerGradCam(self.model, modules[layer])

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cam = self._captum.attribute(inputs, target=targets, relu_attributions=True)
        if not isinstance(cam, torch.Tensor) or cam.dim() != 4:
            got = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
            raise InputError(f"gradcam layer {self.layer!r} must output a feature map (B, C, h, w), got {got}")
        cam = LayerAttribution.interpolate(cam.detach(), tuple(inputs.shape[2:]), interpolate_mode=self.interpolate_mode)
        return cam.clamp_min(0)


def _pair(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return check_int(value[0], name, 1), check_int(value[1], name, 1)
    size = check_int(value, f"{name} (an int or an (h, w) pair)", 1)
    return size, size


@EXPLAINERS.register("occlusion", description="captum Occlusion: logit drop when a window is replaced by the blurred image")
class OcclusionExplainer(Explainer):
    """Occlusion: slide a ``window`` over the image with ``stride``, replace it (all channels)
    with the baseline and record ``f_c(x) - f_c(x_occluded)``; each pixel gets the mean over the
    windows covering it.

    ``window``: an int or ``(h, w)``; default ``ceil(min(H, W) / 8)`` (4 px at 28x28, 28 px at
    224x224). ``stride``: default ``max(1, window // 2)`` per side (must not exceed the window).
    ``baseline``: ``"blur"`` (``sigma`` as in :func:`sparsex.perturb.blur`), ``"zeros"`` or a
    constant. ``internal_batch_size`` images per forward pass (captum's
    ``perturbations_per_eval`` is derived from it).
    """

    name = "occlusion"

    def __init__(self, model: nn.Module, window: int | tuple[int, int] | None = None,
                 stride: int | tuple[int, int] | None = None, baseline: str | float = "blur",
                 sigma: float | None = None, internal_batch_size: int | None = DEFAULT_BATCH) -> None:
        super().__init__(model)
        self.window = _pair(window, "window")
        self.stride = _pair(stride, "stride")
        self.baseline = _check_baseline(baseline)
        self.sigma = check_sigma(sigma)
        self.internal_batch_size = check_int(internal_batch_size, "internal_batch_size", 1, none_ok=True)
        self._captum = Occlusion(self.model)

    def window_and_stride(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The window ``(h, w)`` and stride ``(h, w)`` used on ``height x width`` images."""
        if self.window is None:
            side = max(1, math.ceil(min(height, width) / 8))
            window = (side, side)
        else:
            window = self.window
            if window[0] > height or window[1] > width:
                raise InputError(f"occlusion window {window} is larger than the images ({height}, {width})")
        stride = self.stride or (max(1, window[0] // 2), max(1, window[1] // 2))
        if stride[0] > window[0] or stride[1] > window[1]:
            raise InputError(f"occlusion stride {stride} must not exceed the window {window}")
        return window, stride

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        channels, height, width = inputs.shape[1:]
        window, stride = self.window_and_stride(height, width)
        maps = []
        for part in _chunks(inputs.shape[0], self.internal_batch_size):
            x = inputs[part]
            if self.internal_batch_size is None:  # every window in one pass
                per_eval = (math.ceil((height - window[0]) / stride[0]) + 1) * (math.ceil((width - window[1]) / stride[1]) + 1)
            else:
                per_eval = max(1, self.internal_batch_size // x.shape[0])
            with torch.no_grad():
                attr = self._captum.attribute(x, sliding_window_shapes=(channels, *window), strides=(channels, *stride),
                                              baselines=make_baseline(x, self.baseline, self.sigma),
                                              target=targets[part], perturbations_per_eval=per_eval)
            maps.append(attr.mean(dim=1, keepdim=True))
        return torch.cat(maps)
