"""Input checks shared by every public entry point that takes tensors."""

from __future__ import annotations

import torch

from .errors import InputError


def check_images(x: torch.Tensor, name: str = "images", channels: int | None = None) -> torch.Tensor:
    """Check a batch of images ``(B, C, H, W)``: floating dtype, finite values, expected channels.

    Returns ``x`` unchanged so it can be used inline. Raises :class:`InputError` with one line
    naming the problem otherwise.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InputError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{name} must have {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.numel() and not torch.isfinite(x).all():
        bad = "NaN" if torch.isnan(x).any() else "Inf"
        raise InputError(f"{name} contain {bad} values")
    return x
