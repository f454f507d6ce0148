"""Input checks shared by every public entry point: tensors, and settings for config dataclasses."""

from __future__ import annotations

import math
import numbers
import typing
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .errors import InputError, SparsexError

T = TypeVar("T")


def from_settings(cls: type[T], settings: dict[str, Any], what: str, error: type[Exception] = SparsexError) -> T:
    """Build the config dataclass ``cls`` from ``settings`` (a field that holds a dataclass may be
    given as a dict of its settings, built the same way); names that are not fields of ``cls``
    raise ``error`` with one line listing the valid ones (``what`` names the config, e.g. "SIDE")."""
    if not isinstance(settings, dict):
        raise error(f"{what} settings must be a mapping of names to values, got {settings!r}")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise error(f"unknown {what} setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    hints = typing.get_type_hints(cls)
    nested = {name: from_settings(hints[name], value, f"{what} {name}", error) for name, value in settings.items()
              if is_dataclass(hints[name]) and isinstance(value, dict)}
    return cls(**{**settings, **nested})


def check_number(value: Any, name: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, none_ok: bool = False,
                 error: type[Exception] = InputError) -> float | None:
    """``value`` as a float: a finite real number (not a bool) in ``[low, high]`` (an end is left
    out with ``low_open`` / ``high_open``; ``None`` for no bound), or ``None`` when ``none_ok``.
    Raises a one-line ``error`` (default :class:`InputError`) naming ``name`` and the valid range
    otherwise."""
    if value is None and none_ok:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            rule = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            rule = f"{'>' if low_open else '>='} {low:g}"
        elif high is not None:
            rule = f"{'<' if high_open else '<='} {high:g}"
        else:
            rule = ""
        raise error(f"{name} must be a finite number{' ' + rule if rule else ''}{' or None' if none_ok else ''}, "
                    f"got {value!r}")
    return float(value)


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None, *,
              none_ok: bool = False, error: type[Exception] = InputError) -> int | None:
    """``value`` as an int: an integer (not a bool) in ``[low, high]`` (``None`` for no bound), or
    ``None`` when ``none_ok``. Raises a one-line ``error`` (default :class:`InputError`) naming
    ``name`` and the valid range otherwise."""
    if value is None and none_ok:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    if low is not None and high is not None:
        kind = f"an integer in [{low}, {high}]"
    elif low in (0, 1):
        kind = "a positive integer" if low == 1 else "a non-negative integer"
    elif low is not None:
        kind = f"an integer >= {low}"
    elif high is not None:
        kind = f"an integer <= {high}"
    else:
        kind = "an integer"
    raise error(f"{name} must be {kind}{' or None' if none_ok else ''}, got {value!r}")


def check_indices(indices: Any, n: int) -> list[int]:
    """``indices`` into ``n`` items (a sequence, tensor or array of ints; ``None`` for all of them)
    as a non-empty list of ints in ``[0, n)``; a one-line :class:`InputError` otherwise."""
    if indices is None:
        indices = range(n)
    if isinstance(indices, (torch.Tensor, np.ndarray)):
        indices = indices.tolist()
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise InputError(f"indices must be a sequence of integers, got {indices!r}")
    out = list(indices)
    if not out:
        raise InputError("indices are empty: name at least one item")
    return [check_int(i, f"index into {n} items", 0, n - 1) for i in out]


def check_tensor(x: torch.Tensor, name: str, shape: str, nonempty: bool = False, allow_nan: bool = False) -> torch.Tensor:
    """Check a floating tensor with the dimensions named in ``shape`` (e.g. ``"(B, K)"``) and only
    finite values (NaN allowed with ``allow_nan``, where it means "undefined"; never Inf);
    ``nonempty`` also requires every size >= 1. Returns ``x``; raises a one-line
    :class:`InputError` naming the problem otherwise."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != shape.count(",") + 1 or (nonempty and 0 in x.shape):
        sizes = " with every size >= 1" if nonempty else ""
        raise InputError(f"{name} must have shape {shape}{sizes}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() and not torch.isfinite(x).all():
        if not allow_nan and torch.isnan(x).any():
            raise InputError(f"{name} contain NaN values")
        if torch.isinf(x).any():
            raise InputError(f"{name} contain Inf values")
    return x


def check_images(x: torch.Tensor, name: str = "images", channels: int | None = None) -> torch.Tensor:
    """Check a batch of images ``(B, C, H, W)``: floating dtype, finite values, expected channels."""
    check_tensor(x, name, "(B, C, H, W)")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{name} must have {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    return x
