"""Hooks on the read layers of a circuit (:func:`sparsex.explainers.circuit.readout`): record each
layer's output, replace some of its channels (ablation, :mod:`~sparsex.explainers.circuit_faithfulness`),
or move every read layer along a straight path from reference activations to the image's own
(:func:`channel_attribution`, the readout's ``selection="attribution"``).

**Channel attribution** (integrated gradients on the read layers, as edge attribution patching
with integrated gradients does for circuits: Hanna et al. 2024, "Have Faith in Faithfulness",
arXiv 2403.17806; Marks et al. 2024, arXiv 2403.19647). With ``y_L`` the output of read layer
``L`` where the readout measures it, ``mu_L`` its mean over the reference images (position by
position; by default the images' blurred copies, as for the ablations) and ``alpha`` moving
from 0 to 1, every read layer's output is replaced, in the same forward pass, by
``y~_L = mu_L + alpha (y_L - mu_L)``, where ``y_L`` is computed from the moved layers before it
(for the first read layer, the image's own output). The attribution of channel ``c`` of layer
``L`` to the target logit ``z_t`` is

    ``A_L[c] = (1/m) sum_{s=1..m} sum_{i,j} (y_L[c, i, j] - mu_L[c, i, j]) dz_t / dy~_L[c, i, j]``
    at ``alpha_s = (s - 1/2) / m`` (the midpoint rule, ``m = steps``):

the first-order share of the target logit that the channel's departure from the reference
carries, which is what mean-ablating it removes. Keeping the channels with the largest ``A_L``
keeps the ones whose ablation costs most; the readout's paper keeps the most *active* channels,
which need not carry the decision (docs/methods.md, "Circuits").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..checks import check_images, check_int
from ..errors import InputError, SparsexError
from ..inference import DEFAULT_BATCH, batch_slices
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
            if self.capture:
                self.captured[layer] = output.detach()
            if self.path is not None:
                start, alpha = self.path
                fill = start[layer].to(output.device, output.dtype)
                point = fill + alpha * (output - fill)
                if point.requires_grad:
                    point.retain_grad()
                else:  # frozen weights and an input without gradient: the path starts here
                    point.requires_grad_(True)
                self.moved[layer] = (output.detach(), point)
                return point
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

    def along_path(self, model: nn.Module, x: torch.Tensor, start: dict[str, torch.Tensor],
                   alpha: float) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Logits of ``x`` with every layer's output ``y`` moved to ``start + alpha (y - start)``, and
        per layer ``(y, the moved tensor)`` (whose ``.grad`` a backward pass fills)."""
        self.path, self.moved = (start, alpha), {}
        try:
            return model(x), self.moved
        finally:
            self.path = None

    def run(self, model: nn.Module, x: torch.Tensor, plan: dict | None = None, capture: bool = False) -> torch.Tensor:
        """Logits ``(B, K)`` of ``x`` with ``plan``'s channels replaced (float64 on the CPU)."""
        self.plan, self.capture = plan or {}, capture
        self.calls = {layer: 0 for layer in self.layers}
        try:
            with torch.no_grad():
                logits = model(x)
        except SparsexError:
            raise
        except (RuntimeError, ValueError) as e:
            raise InputError(f"the model cannot run on images of shape {tuple(x.shape)} with the circuit's channels "
                             f"ablated: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        finally:
            self.plan, self.capture = {}, False
        twice = [layer for layer, n in self.calls.items() if n != 1]
        if twice:
            raise InputError(f"the module measuring circuit layer {twice[0]} ran {self.calls[twice[0]]} times in one forward "
                             f"pass; ablating its output needs a module that runs once")
        return logits.detach().to("cpu", torch.float64)


@dataclass(frozen=True)
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
    sites = Sites(model, layers, measured_at)
    was_training = model.training
    model.eval()
    try:
        return ReferenceMeans(sites.means(model, reference, batch_size), {layer: measured_at[layer] for layer in layers},
                              len(reference))
    finally:
        sites.remove()
        model.train(was_training)


@torch.enable_grad()
def channel_attribution(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layers: list[str],
                        measured_at: dict[str, str], reference: torch.Tensor | ReferenceMeans, steps: int = DEFAULT_STEPS,
                        batch_size: int = DEFAULT_BATCH) -> dict[str, torch.Tensor]:
    """``A_L (B, C_L)`` (float64) of every read layer (module docstring) for ``images (B, C, H, W)``
    and their target classes ``targets (B,)``, the path starting at the mean activations of the
    ``reference`` images ``(R, C, H, W)`` (or their :class:`ReferenceMeans`)."""
    check_int(steps, "attribution steps", 1)
    if isinstance(reference, ReferenceMeans):
        reference.check(measured_at)
    else:
        reference = reference_means(model, reference, layers, measured_at, batch_size)
    start = reference.means
    sites = Sites(model, layers, measured_at)
    was_training = model.training
    model.eval()
    try:
        scores = {layer: [] for layer in layers}
        for part in batch_slices(len(images), batch_size):
            total = {layer: 0.0 for layer in layers}
            rows = torch.arange(part.stop - part.start)
            for step in range(steps):
                logits, moved = sites.along_path(model, images[part], start, (step + 0.5) / steps)
                logits[rows, targets[part].to(logits.device)].sum().backward()
                for layer in layers:
                    output, point = moved[layer]
                    share = ((output - start[layer].to(output)) * point.grad).double()
                    total[layer] = total[layer] + (share.flatten(2).sum(2) if share.dim() > 2 else share)
            for layer in layers:
                scores[layer].append((total[layer] / steps).cpu())
        return {layer: torch.cat(parts) for layer, parts in scores.items()}
    finally:
        sites.remove()
        model.train(was_training)
