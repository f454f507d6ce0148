"""Reading a model's internal activations by layer name (forward hooks), for the mask explainer's
activation matching and the circuit readout; and finding a vision transformer's layers in a module
tree (Grad-CAM reads its tokens, the circuit readout refuses it)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..errors import InputError


def resolve_layers(model: nn.Module, layers: list[str]) -> dict[str, nn.Module]:
    """``{name: module}`` for ``layers``; an unknown name is a one-line error listing valid ones."""
    modules = dict(model.named_modules())
    unknown = [name for name in layers if not name or name not in modules]
    if unknown:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        shown = ", ".join(convs[:3] + ["..."] + convs[-3:]) if len(convs) > 6 else ", ".join(convs)
        raise InputError(f"model has no layer {unknown[0]!r}; its {len(convs)} convolution layers are: {shown} "
                         f"(any name from model.named_modules() works)")
    return {name: modules[name] for name in layers}


def feature_convs(model: nn.Module) -> list[str]:
    """The ``nn.Conv2d`` layers of ``model``'s feature extractor, in module order: those under
    ``model.backbone`` where the model has one with convolutions (a prototype or sparse head may
    apply its own convolutions functionally, so they never run as modules), else all of them."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    extractor = [n for n in convs if n.startswith("backbone.")] if hasattr(model, "backbone") else []
    return extractor or convs


def default_layers(model: nn.Module, count: int = 3) -> list[str]:
    """``count`` convolution layers of the feature extractor (:func:`feature_convs`) spread evenly
    from its first third to its last convolution."""
    convs = feature_convs(model)
    if not convs:
        raise InputError(f"{type(model).__name__} has no Conv2d layer; name the layers to match explicitly")
    if len(convs) <= count:
        return convs
    first = len(convs) // 3
    picks = {first + round(i * (len(convs) - 1 - first) / (count - 1)) for i in range(count)}
    return [convs[i] for i in sorted(picks)]


@contextmanager
def record_activations(model: nn.Module, layers: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """While active, every forward pass of ``model`` stores the output of each named layer in the
    yielded dict (overwritten by the next pass). Hooks are removed on exit, also on error."""
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in resolve_layers(model, layers).items():
        def hook(_module, _inputs, output, name=name):
            store[name] = output
        handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def check_layers_ran(model: nn.Module, layers: list[str], seen: dict[str, torch.Tensor]) -> None:
    """One line naming the ``layers`` that recorded nothing in a forward pass of ``model`` (modules
    that exist but never run as modules: applied functionally, or on a branch not taken), with the
    feature extractor's convolutions as candidates."""
    silent = [name for name in layers if name not in seen]
    if silent:
        convs = feature_convs(model)
        shown = ", ".join(convs[-4:])
        raise InputError(f"layer {silent[0]!r} never runs as a module in {type(model).__name__}'s forward pass, so its "
                         f"activations cannot be read; name layers that run, e.g. {shown}")


@dataclass(frozen=True)
class TransformerLayers:
    """Where a vision transformer sits in a model's module tree (names as in ``model.named_modules()``,
    with any wrapper prefix such as ``backbone.model.``)."""

    #: the patch embedding's convolution, output ``(B, D, h, w)``: the grid of the patch tokens
    embed: str
    #: the container of the transformer blocks, each mapping tokens ``(B, N, D)`` to ``(B, N, D)``
    blocks: str
    #: the first norm of the last block (timm ``norm1``, torchvision ``ln_1``), or the last block
    #: itself when it has none: the tokens ``(B, N, D)`` that Grad-CAM reads
    last_norm: str


def find_transformer(model: nn.Module) -> TransformerLayers | None:
    """The vision transformer in ``model``'s module tree, or None: the first module with a
    ``patch_embed`` and ``blocks`` (timm ``vit_*``, ``deit_*``, ...) or with a ``conv_proj`` and
    ``encoder.layers`` (torchvision ``vit_b_16``, ...), found by structure, not by name."""
    modules = dict(model.named_modules())
    containers = (nn.Sequential, nn.ModuleList)
    for name, module in modules.items():
        prefix = f"{name}." if name else ""
        if hasattr(module, "patch_embed") and isinstance(getattr(module, "blocks", None), containers):
            embed, blocks = f"{prefix}patch_embed", f"{prefix}blocks"
        elif isinstance(getattr(module, "conv_proj", None), nn.Conv2d) and isinstance(
                getattr(getattr(module, "encoder", None), "layers", None), containers):
            embed, blocks = f"{prefix}conv_proj", f"{prefix}encoder.layers"
        else:
            continue
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d) and (n == embed or n.startswith(f"{embed}."))]
        children = list(modules[blocks].named_children())
        if not convs or not children:
            continue
        last_name, last = children[-1]
        norm = next((attr for attr in ("norm1", "ln_1") if isinstance(getattr(last, attr, None), nn.Module)), None)
        last_name = f"{blocks}.{last_name}"
        return TransformerLayers(embed=convs[-1], blocks=blocks, last_norm=f"{last_name}.{norm}" if norm else last_name)
    return None
