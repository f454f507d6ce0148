"""The model registry: ``create_model(name, **cfg)``, ``list_models()``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import CheckpointError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def create_model(name: str, **cfg: Any) -> nn.Module:
    """Create a registered model head, e.g. ``create_model("side", in_channels=1280, num_classes=24)``."""
    return MODELS.create(name, **cfg)


def list_models() -> list[str]:
    """Names of all registered models."""
    return MODELS.names()


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
    settings = dict(checkpoint.config.get("model") or {})
    name = settings.pop("name", None)
    if name is None:
        raise CheckpointError(f"checkpoint {path} does not name its model (config.model.name)")
    settings.pop("variant", None)  # implied by the registered name
    model = create_model(name, **settings)
    checkpoint.load_into(model)
    return model.eval(), checkpoint
