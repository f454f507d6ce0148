"""Plain classifiers on a frozen backbone's feature map: the dense baselines that sparse heads
are compared with."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import SparsexError
from .base import MODELS, check_head_features


class LinearProbe(nn.Module):
    """A linear probe: global average pooling, then one linear layer,
    ``logits = W mean_{i,j} F[:, i, j] + b`` for features ``F (B, C, h, w)``. ``forward`` returns
    the logits ``(B, K)``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SparsexError(f"linear probe setting {name}={value!r} must be a positive integer")
        self.in_channels = in_channels
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_head_features(features, self.in_channels, "linear probe")
        return self.linear(features.mean(dim=(2, 3)))


@MODELS.register("linear-probe", description="dense baseline: global average pooling + one linear layer")
def create_linear_probe(**cfg: Any) -> LinearProbe:
    return LinearProbe(**cfg)
