"""The model registry: ``create_model(name, **cfg)``, ``list_models()``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..checks import check_images
from ..errors import CheckpointError, InputError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Create a registered model head, e.g. ``create_model("side", in_channels=1280, num_classes=24)``."""
    return MODELS.create(name, **cfg)


def list_models() -> list[str]:
    """Names of all registered models."""
    return MODELS.names()


def check_head_features(features: torch.Tensor, in_channels: int, head: str) -> torch.Tensor:
    """Check a backbone feature map ``(B, in_channels, h, w)`` (finite floats) for ``head``."""
    if not isinstance(features, torch.Tensor) or features.dim() != 4 or features.shape[1] != in_channels:
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise InputError(f"{head} head expects features (B, {in_channels}, h, w), got {got}")
    return check_images(features, name="features")


def contribution_threshold(head: nn.Module, eps: float) -> float:
    """The threshold above which ``s_p W[c, p]`` counts as a contribution: ``eps``, or the head's
    own inference threshold when larger (a head that zeroes smaller importances in its logits,
    as ProtoS-ViT does, has no contributions between ``eps`` and that threshold)."""
    return max(eps, float(getattr(head, "contribution_threshold", 0.0)))


@dataclass
class PrototypeOutput:
    """What a prototype head computes for a batch.

    ``logits (B, K)``; ``scores (B, P)`` non-negative prototype scores; ``maps (B, P, h, w)`` the
    prototype activation maps the scores are pooled from; ``locations (B, P)`` flat arg-max index
    into ``h * w`` of each map.
    """

    logits: torch.Tensor
    scores: torch.Tensor
    maps: torch.Tensor
    locations: torch.Tensor


def load_model(path: str | os.PathLike, family: str | None = None) -> tuple[nn.Module, Checkpoint]:
    """Rebuild a model head from a checkpoint folder written by a sparsex trainer.

    The checkpoint's ``config["model"]`` holds ``name`` (a registered model) and its settings.
    Returns the head (eval mode) and the checkpoint (whose config also names the backbone and data).
    """
    checkpoint = load_checkpoint(path, family=family)
    settings = checkpoint.config.get("model")
    if not isinstance(settings, dict) or not isinstance(settings.get("name"), str):
        raise CheckpointError(f"checkpoint {path} does not name its model (config.model.name)")
    settings = dict(settings)
    name = settings.pop("name")
    settings.pop("variant", None)  # implied by the registered name
    try:
        model = create_model(name, **settings)
    except TypeError as e:  # settings the model does not take
        raise CheckpointError(f"checkpoint {path}: config.model does not fit model {name!r} ({e})") from None
    checkpoint.load_into(model)
    return model.eval(), checkpoint
