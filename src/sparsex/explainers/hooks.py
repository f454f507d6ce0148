"""Reading a model's internal activations by layer name (forward hooks), for the mask explainer's
activation matching and the circuit readout."""

from __future__ import annotations

from contextlib import contextmanager
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


def default_layers(model: nn.Module, count: int = 3) -> list[str]:
    """``count`` convolution layers spread evenly from the first third to the last convolution."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
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
