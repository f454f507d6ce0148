"""Hooks on the read layers of a circuit (:func:`sparsex.explainers.circuit.readout`): record each
layer's output, replace some of its channels (ablation, :mod:`~sparsex.explainers.circuit_faithfulness`),
or move every read layer along a straight path from reference activations to the image's own
(:func:`channel_attribution`, the readout's ``selection="attribution"``).

**Channel attribution**: integrated gradients on the read layers, all of them moved together (a
joint-path variant of what circuit work does with attribution patching: Syed et al. 2023, arXiv
2310.10348, and its integrated-gradients form, EAP-IG, Hanna et al. 2024, arXiv 2403.17806, which
move the input, or one layer at a time, and score edges; here channels). With ``mu_L`` the mean
output of read layer ``L`` (where the readout measures it) over the reference images, position by
position (by default the images' blurred copies, as for the ablations), at step ``s`` of ``m``
every read layer's output ``y_L^(s)`` is replaced, in one forward pass, by
``y~_L^(s) = mu_L + alpha_s (y_L^(s) - mu_L)``, ``alpha_s = (s - 1/2) / m`` (the midpoint rule),
where ``y_L^(s)`` is computed from the moved layers before it (for the first read layer it is the
image's own output). The attribution of channel ``c`` of layer ``L`` to the target logit ``z_t``:

    ``A_L[c] = (1/m) sum_{s=1..m} sum_{i,j} (y_L^(s)[c, i, j] - mu_L[c, i, j]) dz_t / dy~_L^(s)[c, i, j]``.

A first-order estimate of how much of the target logit the channel's departure from the
reference carries, i.e. of what mean-ablating it removes. Summed over the channels of all read
layers together (not of one layer) the attributions approximate ``z_t(x) - z_t(reference mean)``.
The readout's paper keeps the most *active* channels, which need not carry the decision
(docs/methods.md, "Channel selection").
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from ..checks import check_images, check_int
from ..errors import InputError, SparsexError
from ..inference import DEFAULT_BATCH, batch_slices, frozen
from ..perturb import blur

#: integration steps of :func:`channel_attribution`
DEFAULT_STEPS = 16


def check_batch(images: Any, name: str) -> torch.Tensor:
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        images = images.unsqueeze(0)
    check_images(images, name)
    if images.shape[0] == 0:
        raise InputError(f"{name} hold 0 images (shape {tuple(images.shape)}); give at least one")
    if 0 in images.shape:
        raise InputError(f"{name} are empty (shape {tuple(images.shape)})")
    return images


def reference_images(images: torch.Tensor, reference: Any) -> Any:
    """The reference images whose mean activations stand for "nothing there": ``reference``
    checked against ``images``' shape (:class:`ReferenceMeans` as they are), or by default
    ``blur(images)``."""
    if reference is None:
        return blur(images)
    if isinstance(reference, ReferenceMeans):
        return reference
    reference = check_batch(reference, "reference images")
    if reference.shape[1:] != images.shape[1:]:
        raise InputError(f"the reference images must have the images' shape (C, H, W) = {tuple(images.shape[1:])}, "
                         f"got {tuple(reference.shape[1:])}")
    return reference.to(images.device, images.dtype)


class Sites:
    """Forward hooks on the modules where the read layers were measured: they record each layer's
    output (``capture``) and replace channels of it (``plan``: per layer ``(keep (B, C) bool,
    fill)``, ``fill`` the mean map ``(C, ...)`` or None for zeros)."""

    def __init__(self, model: nn.Module, layers: list[str], measured_at: dict[str, str]) -> None:
        modules = dict(model.named_modules())
        missing = [layer for layer in layers if measured_at.get(layer) not in modules]
        if missing:
            raise InputError(f"the circuit's layer {missing[0]} was measured at {measured_at.get(missing[0])!r}, "
                             f"which this model does not have (a circuit read from another model?)")
        self.layers = layers
        self.plan: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.captured: dict[str, torch.Tensor] = {}
        self.capture = False
        self.path: tuple[dict[str, torch.Tensor], float] | None = None
        self.moved: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.calls = {layer: 0 for layer in layers}
        self.handles = [modules[measured_at[layer]].register_forward_hook(self._hook(layer)) for layer in layers]

    def _hook(self, layer: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
            self.calls[layer] += 1
            if self.capture:  # a copy: an in-place op after the module (a ResNet's x += shortcut) would change it
                self.captured[layer] = output.detach().clone()
            if self.path is not None:
                start, alpha = self.path
                fill = start[layer].to(output.device, output.dtype)
                point = fill + alpha * (output - fill)
                if not point.requires_grad:  # frozen weights and an input without gradient: the path starts here
                    point.requires_grad_(True)
                self.moved[layer] = (output.detach(), point)
                return point.clone()  # in-place ops downstream change the copy, not the tensor differentiated against
            if layer not in self.plan:
                return None
            keep, fill = self.plan[layer]
            keep = keep.to(output.device).view(*keep.shape, *([1] * (output.dim() - 2)))
            return torch.where(keep, output, torch.zeros((), dtype=output.dtype, device=output.device) if fill is None
                               else fill.to(output.device, output.dtype))
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def means(self, model: nn.Module, reference: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """Per layer the mean output map ``mu_L (C, ...)`` over the ``reference`` images, position by position."""
        sums: dict[str, torch.Tensor] = {}
        for part in batch_slices(len(reference), batch_size):
            self.run(model, reference[part], capture=True)
            for layer in self.layers:
                total = self.captured[layer].double().sum(dim=0)
                sums[layer] = total if layer not in sums else sums[layer] + total
        return {layer: (sums[layer] / len(reference)).float() for layer in self.layers}

    def _forward(self, model: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
        """``model(x)`` through the hooks; a one-line error when it fails or a hooked module runs other than once."""
        self.calls = {layer: 0 for layer in self.layers}
        try:
            logits = model(x)
        except SparsexError:
            raise
        except (RuntimeError, ValueError) as e:
            raise InputError(f"the model cannot run on images of shape {tuple(x.shape)} with the circuit's channels "
                             f"{what}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        twice = [layer for layer, n in self.calls.items() if n != 1]
        if twice:
            raise InputError(f"the module measuring circuit layer {twice[0]} ran {self.calls[twice[0]]} times in one forward "
                             f"pass; ablating its output needs a module that runs once")
        return logits

    def along_path(self, model: nn.Module, x: torch.Tensor, start: dict[str, torch.Tensor],
                   alpha: float) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Logits of ``x`` with every layer's output ``y`` moved to ``start + alpha (y - start)``, and
        per layer ``(y, the moved tensor)``, to differentiate the logits against."""
        self.path, self.moved = (start, alpha), {}
        try:
            return self._forward(model, x, "moved along the attribution path"), self.moved
        finally:
            self.path = None

    def run(self, model: nn.Module, x: torch.Tensor, plan: dict | None = None, capture: bool = False) -> torch.Tensor:
        """Logits ``(B, K)`` of ``x`` with ``plan``'s channels replaced (float64 on the CPU)."""
        self.plan, self.capture = plan or {}, capture
        try:
            with torch.no_grad():
                logits = self._forward(model, x, "ablated")
        finally:
            self.plan, self.capture = {}, False
        return logits.detach().to("cpu", torch.float64)


@contextmanager
def hooked(model: nn.Module, layers: list[str], measured_at: dict[str, str]) -> Iterator[Sites]:
    """:class:`Sites` on ``model``'s read layers, the model :func:`~sparsex.inference.frozen` within
    the block (eval mode, no parameter gradients); afterwards the hooks are removed and every
    module's mode and parameter flag restored."""
    with frozen(model):
        sites = Sites(model, layers, measured_at)
        try:
            yield sites
        finally:
            sites.remove()


@dataclass(frozen=True, eq=False)
class ReferenceMeans:
    """The mean output maps ``mu_L`` of reference images at read layers (by layer name), and the
    module each was measured at: computed once (:func:`reference_means`), passed as ``reference``
    to many readouts instead of the images, whose means every readout would otherwise recompute."""

    means: dict[str, torch.Tensor]
    measured_at: dict[str, str]
    images: int  # how many reference images the means are over

    def check(self, measured_at: dict[str, str]) -> None:
        """Raise a one-line error unless the means were taken at every layer of ``measured_at``."""
        if any(self.measured_at.get(layer) != module for layer, module in measured_at.items()):
            raise InputError(f"the reference means were taken at the layers {sorted(self.measured_at)}, not at the "
                             f"circuit's {sorted(measured_at)}; take them with reference_means() at the readout's layers")


def reference_means(model: nn.Module, reference: torch.Tensor, layers: list[str], measured_at: dict[str, str],
                    batch_size: int = DEFAULT_BATCH) -> ReferenceMeans:
    """:class:`ReferenceMeans` of the ``reference`` images ``(R, C, H, W)`` at ``layers`` (a
    readout graph's ``graph["layers"]`` and ``graph["measured_at"]``)."""
    reference = check_batch(reference, "reference images")
    with hooked(model, layers, measured_at) as sites:
        means = sites.means(model, reference, batch_size)
    return ReferenceMeans(means, {layer: measured_at[layer] for layer in layers}, len(reference))


@torch.enable_grad()
def channel_attribution(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layers: list[str],
                        measured_at: dict[str, str], reference: torch.Tensor | ReferenceMeans, steps: int = DEFAULT_STEPS,
                        batch_size: int = DEFAULT_BATCH) -> dict[str, torch.Tensor]:
    """``A_L (B, C_L)`` (float64) of every read layer (module docstring) for ``images (B, C, H, W)``
    and their target classes ``targets (B,)``, the path starting at the mean activations of the
    ``reference`` images ``(R, C, H, W)`` (or their :class:`ReferenceMeans`)."""
    check_int(steps, "attribution steps", 1)
    if len(targets) != len(images):
        raise InputError(f"give one target per image: {len(targets)} targets for {len(images)} images")
    if isinstance(reference, ReferenceMeans):
        reference.check(measured_at)
    else:
        reference = reference_means(model, reference, layers, measured_at, batch_size)
    start = reference.means
    scores = {layer: [] for layer in layers}
    with hooked(model, layers, measured_at) as sites:
        for part in batch_slices(len(images), batch_size):
            total = {layer: 0.0 for layer in layers}
            for step in range(steps):
                logits, moved = sites.along_path(model, images[part], start, (step + 0.5) / steps)
                rows = torch.arange(len(logits), device=logits.device)
                chosen = logits[rows, targets[part].to(logits.device)].sum()
                # gradients of the moved tensors only: nothing lands in the parameters' .grad
                grads = torch.autograd.grad(chosen, [moved[layer][1] for layer in layers], allow_unused=True)
                for layer, grad in zip(layers, grads):
                    output = moved[layer][0]
                    if grad is None:  # the target logit does not depend on this layer
                        grad = torch.zeros_like(output)
                    share = ((output - start[layer].to(output)) * grad).double()
                    total[layer] = total[layer] + (share.flatten(2).sum(2) if share.dim() > 2 else share)
            for layer in layers:
                scores[layer].append((total[layer] / steps).cpu())
    return {layer: torch.cat(parts) for layer, parts in scores.items()}
