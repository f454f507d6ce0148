"""Running a classifier ``model(images (B, C, H, W)) -> logits (B, K)`` for explainers and metrics:
frozen (eval mode, no parameter gradients, both restored afterwards), in bounded batches, with
targets resolved and checked the same way everywhere; and the checks of their settings."""

from __future__ import annotations

import difflib
import numbers
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from .errors import InputError

#: ``None`` (the model's top-1), one class for every image, or one class per image.
Target = Optional[Union[int, Sequence[int], torch.Tensor]]


#: images per forward pass of a model on images, where the caller names none. On a CPU small
#: batches are fastest: 8-16 Lite0 images at 160-224 px ran 1.5-2.3x faster per image than 64
#: (each batch's activations stay in the heap; sparsex.runtime, docs/cli.md "Shared machines").
DEFAULT_BATCH = 16

def check_model(model: nn.Module) -> nn.Module:
    """``model`` must be an ``nn.Module`` (a classifier mapping images to logits)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module mapping images (B, C, H, W) to logits (B, K), "
                         f"got {type(model).__name__}")
    return model


def check_model_device(model: nn.Module, inputs: torch.Tensor) -> None:
    """The model's parameters (or buffers) must be on the inputs' device, and floating inputs must
    have the dtype of its floating parameters (:func:`check_model_dtype`)."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    if tensor is not None and tensor.device != inputs.device:
        raise InputError(f"inputs are on {inputs.device} but the model is on {tensor.device}; move one to the other")
    check_model_dtype(model, inputs)


def check_model_dtype(model: nn.Module, inputs: torch.Tensor) -> None:
    """Floating ``inputs`` must have the dtype of the model's first floating parameter (a float32
    model cannot take float64 or float16 images: its convolutions would fail deep inside torch)."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None and inputs.is_floating_point() and inputs.dtype != param.dtype:
        raise InputError(f"inputs have dtype {inputs.dtype} but the model computes in {param.dtype}; "
                         f"convert them with .to({param.dtype})")


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every submodule is in eval mode (no BatchNorm updates, no dropout) and no
    parameter requires gradients (nothing accumulates in ``.grad``, no graph is built through the
    weights); afterwards every submodule's mode and every parameter's flag is restored as it was."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        model.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, flag in flags:
            param.requires_grad_(flag)


def check_logits(logits: torch.Tensor, batch: int) -> torch.Tensor:
    """The model's output must be logits ``(batch, K)``."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InputError(f"model must map images (B, C, H, W) to logits (B, K); got {got} for B = {batch}")
    return logits


def batch_slices(n: int, size: int | None) -> Iterator[slice]:
    """The slices ``[0, size), [size, 2 size), ...`` covering ``n`` items (one slice for ``size=None``)."""
    step = max(1, n if size is None else size)
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """``model(images)`` without gradients, ``batch_size`` images at a time (all at once for
    ``None``); the caller freezes the model. Returns logits ``(B, K)``."""
    return torch.cat([check_logits(model(images[part]), part.stop - part.start)
                      for part in batch_slices(images.shape[0], batch_size)])


def resolve_targets(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The class explained or scored for each image, ``(B,)`` int64 on the logits' device.

    ``logits (B, K)``; ``target``: ``None`` (the top-1 class, ties to the lowest index), an int
    (the same class for every image), or a sequence/tensor of ``B`` ints (:func:`class_targets`).
    """
    if target is None:
        return logits.argmax(dim=1)
    return class_targets(target, logits.shape[0], logits.shape[1], logits.device)


def class_targets(target: Target, batch: int, num_classes: int, device: torch.device | str) -> torch.Tensor:
    """Given classes as ``(batch,)`` int64 on ``device``: an int (the same class for every image) or
    a sequence/tensor of ``batch`` ints; a class outside ``[0, num_classes)`` raises a one-line
    :class:`InputError` naming ``num_classes``."""
    if isinstance(target, bool) or (isinstance(target, numbers.Number) and not isinstance(target, numbers.Integral)):
        raise InputError(f"target must be an integer class, a sequence or tensor of {batch} classes, or None; got {target!r}")
    try:
        classes = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"target must be an integer class, a sequence or tensor of {batch} classes, or None; "
                         f"got {type(target).__name__}") from None
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        raise InputError(f"target classes must be integers, got dtype {classes.dtype}")
    if classes.dim() == 0:
        classes = classes.expand(batch)
    if classes.shape != (batch,):
        raise InputError(f"target must be one class or one per image ({batch}), got shape {tuple(classes.shape)}")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise InputError(f"target class {classes[bad][0].item()} is out of range: the model has {num_classes} classes"
                         f" (valid targets 0..{num_classes - 1})")
    return classes.to(device=device, dtype=torch.long)


def class_names(model: nn.Module, count: int) -> list[str]:
    """The model's class names (its ``classes`` attribute, e.g. an ImageClassifier's) when it has
    ``count`` of them, else ``"0"``, ``"1"``, ..."""
    names = getattr(model, "classes", None)
    return [str(n) for n in names] if names and len(names) == count else [str(i) for i in range(count)]


def class_index(target: int | str, names: list[str]) -> int:
    """One class given as an index or by name (``"daisy"``, case-insensitive; a string of digits
    is an index) among ``names``; an unknown name raises a one-line :class:`InputError` that
    suggests the closest names."""
    if isinstance(target, str):
        text = target.strip()
        if text.isdigit():
            target = int(text)
        else:
            lowered = {name.lower(): i for i, name in enumerate(names)}
            if text.lower() in lowered:
                return lowered[text.lower()]
            close = difflib.get_close_matches(text.lower(), list(lowered), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(names[lowered[c]]) for c in close)}?" if close else ""
            raise InputError(f"the model has no class {target!r}{hint} ({len(names)} classes, e.g. "
                             f"{' | '.join(names[:3])})")
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or not 0 <= target < len(names):
        raise InputError(f"target class {target!r} is out of range: the model has {len(names)} classes "
                         f"(valid targets 0..{len(names) - 1} or a class name)")
    return int(target)


def choice(value: Any, name: str, valid: tuple[str, ...]) -> str:
    """``value`` must be one of ``valid``; a one-line error listing them otherwise."""
    if not isinstance(value, str) or value not in valid:
        raise InputError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
    return value
