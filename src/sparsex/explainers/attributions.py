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
                           layer (a ViT: its tokens laid on the patch   sum inside Grad-CAM); ReLU,
                           grid), upsampled by                          non-negative
                           ``LayerAttribution.interpolate``
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
from typing import Any

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn

from ..checks import check_int, check_number
from ..errors import InputError
from ..inference import DEFAULT_BATCH, batch_slices, choice
from ..perturb import BASELINES, check_sigma, make_baseline
from .base import EXPLAINERS, Explainer
from .hooks import feature_convs, find_transformer

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
INTERPOLATE_MODES = ("bilinear", "nearest", "bicubic", "area")


def _check_baseline(baseline: Any) -> str | float:
    if isinstance(baseline, str):
        return choice(baseline, "baseline", BASELINES)
    return check_number(baseline, f"baseline (one of {', '.join(BASELINES)} or a number)")


@EXPLAINERS.register("integrated-gradients", aliases=("ig",),
                     description="captum IntegratedGradients from the blurred image (or zeros); channels summed")
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
        for part in batch_slices(inputs.shape[0], self.internal_batch_size):
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


@EXPLAINERS.register("gradcam", description="Grad-CAM on a conv layer (captum LayerGradCam; default the last) or a ViT's last block (tokens on the patch grid), upsampled, ReLU")
class GradCAMExplainer(Explainer):
    """Grad-CAM: ``ReLU(sum_k alpha_k A_k)`` with ``A`` the output ``(B, k, h, w)`` of ``layer``
    and ``alpha_k`` the spatial mean of ``d f_c / d A_k``, upsampled to ``(H, W)`` with
    ``interpolate_mode`` (captum's ``LayerAttribution.interpolate``), then ReLU again.

    ``layer``: a module name from ``model.named_modules()``. Default on a CNN: the last
    ``nn.Conv2d`` of the feature extractor, ``model.backbone`` where the model has one, as Grad-CAM
    is defined (a prototype head's own convolutions may be applied functionally and never run as
    modules). A name that does not exist raises a one-line error listing the conv layers.

    On a vision transformer (:func:`~sparsex.explainers.hooks.find_transformer`: a ``patch_embed``
    with ``blocks``, or torchvision's ``conv_proj`` with ``encoder.layers``) the default layer is
    the first norm of the last block (``norm1`` / ``ln_1``, as pytorch-grad-cam does: the last
    block's attention is where the class token still reads the patch tokens, while the gradient
    at the last block's *output* reaches the class token only). A layer that outputs tokens
    ``(B, N, D)`` is laid on the patch grid first, the standard reshape transform: the
    class/register tokens (the first ``N - h w``, with ``(h, w)`` the patch embedding's output grid
    on these inputs) are dropped and ``(B, h w, D)`` becomes ``A (B, D, h, w)``. Never the patch
    embedding's convolution by default: it sees each patch alone.
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: str | None = None, interpolate_mode: str = "bilinear") -> None:
        super().__init__(model)
        convs = conv_layer_names(self.model)
        modules = dict(self.model.named_modules())
        self.transformer = find_transformer(self.model)
        if layer is None and self.transformer is not None:
            layer = self.transformer.last_norm
        elif layer is None:
            if not convs:
                raise InputError("gradcam needs a conv layer, but the model has no nn.Conv2d; name a layer with a "
                                 "(B, C, h, w) output as layer=")
            layer = feature_convs(self.model)[-1]
        elif not isinstance(layer, str) or layer not in modules:
            close = difflib.get_close_matches(str(layer), convs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown layer {layer!r} for gradcam{hint}; conv layers of this model: "
                             f"{', '.join(convs) or '(none)'}")
        self.layer = layer
        self.interpolate_mode = choice(interpolate_mode, "interpolate_mode", INTERPOLATE_MODES)
        self._captum = LayerGradCam(self.model, modules[layer]) if self.transformer is None else None

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self._captum is not None:
            cam = self._captum.attribute(inputs, target=targets, relu_attributions=True)
        else:
            cam = self._token_cam(inputs, targets)
        if not isinstance(cam, torch.Tensor) or cam.dim() != 4:
            got = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
            tokens = " or tokens (B, N, D)" if self.transformer is not None else ""
            raise InputError(f"gradcam layer {self.layer!r} must output a feature map (B, C, h, w){tokens}, got {got}")
        cam = LayerAttribution.interpolate(cam.detach(), tuple(inputs.shape[2:]), interpolate_mode=self.interpolate_mode)
        return cam.clamp_min(0)

    def _token_cam(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Grad-CAM on a vision transformer, captum's arithmetic on ``A (B, D, h, w)``: the layer's
        output (made a leaf that requires grad, so the frozen model's gradient reaches it) and
        ``d f_c / d A`` from one forward and backward pass, tokens laid on the patch grid. None, or
        a tensor of another shape, where the layer gives no map (the caller's one-line error)."""
        modules = dict(self.model.named_modules())
        seen: dict[str, Any] = {}

        def keep_grid(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            seen["grid"] = tuple(output.shape[2:])

        def keep_output(_module: nn.Module, _inputs: tuple, output: Any) -> Any:
            if not isinstance(output, torch.Tensor) or "output" in seen:
                return None
            seen["output"] = output.detach().requires_grad_(True)
            return seen["output"]

        handles = [modules[self.transformer.embed].register_forward_hook(keep_grid),
                   modules[self.layer].register_forward_hook(keep_output)]
        try:
            logits = self.model(inputs)
        finally:
            for handle in handles:
                handle.remove()
        if "output" not in seen:  # the layer did not run, or gave no tensor
            return None
        acts = seen["output"]
        grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), acts, allow_unused=True)[0]
        grads = torch.zeros_like(acts) if grads is None else grads
        if acts.dim() == 3:
            acts, grads = (self._on_grid(t, seen["grid"]) for t in (acts, grads))
        if acts.dim() != 4:
            return acts
        return torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True))

    def _on_grid(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Tokens ``(B, N, D)`` -> ``(B, D, h, w)``: the class/register tokens (the first ``N - h w``)
        dropped, the patch tokens laid out row by row on the ``(h, w)`` grid."""
        batch, count, dim = tokens.shape
        prefix = count - grid[0] * grid[1]
        if prefix < 0:
            raise InputError(f"gradcam layer {self.layer!r} gives {count} tokens, fewer than the {grid[0]}x{grid[1]} "
                             f"patches of {self.transformer.embed}; name a layer inside {self.transformer.blocks}")
        return tokens[:, prefix:].transpose(1, 2).reshape(batch, dim, *grid)


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
        for part in batch_slices(inputs.shape[0], self.internal_batch_size):
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
