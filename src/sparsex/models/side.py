"""SIDE (arXiv 2507.19321): a sparse prototypical-parts head on a frozen backbone's feature map,
and the dense InfoDisent head it makes sparse, as one module with two configurations.

On features ``F (B, C, h, w)``:

1. **prototype expansion**: a 1x1 convolution ``C -> C'``: ``E = conv1x1(F)``;
2. **disentanglement**: an orthogonal ``C' x C'`` map ``U`` at every location, ``Z = U E``
   (kept orthogonal by construction: ``torch.nn.utils.parametrizations.orthogonal``, Cayley map);
3. **sparse pooling**: the positive and the negative direction of each channel are separate
   prototypes, ``maps = [Z, -Z]`` ``(B, P, h, w)`` with ``P = 2 C'``; a prototype's score is its
   spatial maximum made non-negative, ``s_p = relu(max_{i,j} maps_p[i, j])`` (a presence score;
   the arg-max location is kept for explanations);
4. **scores sheet**: ``logits = W_eff s + b``. SIDE: ``W_eff = relu(W) * M`` (``M`` the fixed
   0/1 pruning mask, all ones until pruned), outputs ``sigmoid(logits)``, one independent
   probability per class. InfoDisent (``variant="infodisent"``): ``W_eff = W`` signed, softmax outputs.

The training stages (ASL pretraining, top-A pruning, fine-tuning, OCLA calibration, held-out offset) live in
:mod:`sparsex.train.side`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from ..checks import check_int
from ..errors import SparsexError
from .base import MODELS, PrototypeOutput, check_head_features

VARIANTS = ("side", "infodisent")


@dataclass(frozen=True)
class SIDEConfig:
    """``in_channels`` C of the backbone map, ``num_classes`` K, ``expanded_channels`` C'
    (``P = 2 C'`` prototypes), ``variant`` "side" (sigmoid, non-negative prunable weights) or
    "infodisent" (SIDE's dense baseline: softmax, signed weights)."""

    in_channels: int
    num_classes: int
    expanded_channels: int = 512
    variant: str = "side"

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "expanded_channels"):
            check_int(getattr(self, name), f"SIDE setting {name}", 1, error=SparsexError)
        if self.num_classes < 2:
            raise SparsexError(f"SIDE needs at least 2 classes, got num_classes={self.num_classes}")
        if self.variant not in VARIANTS:
            raise SparsexError(f"unknown SIDE variant {self.variant!r}; valid: {', '.join(VARIANTS)}")

    @property
    def num_prototypes(self) -> int:
        return 2 * self.expanded_channels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SIDEHead(nn.Module):
    """The SIDE / InfoDisent head (see the module docstring). ``forward(features)`` ->
    :class:`PrototypeOutput`."""


    def __init__(self, config: SIDEConfig) -> None:
        super().__init__()
        self.config = config
        c, e, k = config.in_channels, config.expanded_channels, config.num_classes
        self.expand = nn.Conv2d(c, e, kernel_size=1)
        self.disentangle = orthogonal(nn.Linear(e, e, bias=False), orthogonal_map="cayley")
        self.weight = nn.Parameter(torch.empty(k, config.num_prototypes))
        self.bias = nn.Parameter(torch.zeros(k))
        self.register_buffer("prune_mask", torch.ones(k, config.num_prototypes))
        if config.variant == "side":
            # Non-negative start, and the bias at the class prior p = 1/K (as RetinaNet does for
            # sigmoid heads): at p = 0.5 the negatives' loss drives the ReLU'd weights below zero,
            # where they get no gradient, before the positives can grow (on the part world with
            # Lite0 features: 62% test accuracy after 4 ASL epochs without it, 97% with it).
            nn.init.uniform_(self.weight, 0.0, 1.0 / config.num_prototypes ** 0.5)
            nn.init.constant_(self.bias, -math.log(k - 1))
        else:
            nn.init.normal_(self.weight, 0.0, 1.0 / config.num_prototypes ** 0.5)

    @property
    def sigmoid_outputs(self) -> bool:
        """True for SIDE (independent per-class sigmoid), False for the dense softmax baseline."""
        return self.config.variant == "side"

    def class_weights(self) -> torch.Tensor:
        """The effective scores sheet ``W_eff (K, P)`` (ReLU'd and pruning-masked for SIDE)."""
        if self.config.variant == "side":
            return torch.relu(self.weight) * self.prune_mask
        return self.weight

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities: sigmoid (SIDE) or softmax (dense)."""
        return torch.sigmoid(logits) if self.sigmoid_outputs else torch.softmax(logits, dim=1)

    def prototype_maps(self, features: torch.Tensor) -> torch.Tensor:
        """``F (B, C, h, w)`` -> ``[Z, -Z] (B, P, h, w)``."""
        check_head_features(features, self.config.in_channels, "SIDE")
        # Z = U (W_e F + b_e) = (U W_e) F + U b_e: one channels-last matmul over all locations.
        u = self.disentangle.weight
        combined = u @ self.expand.weight.flatten(1)
        z = F.linear(features.permute(0, 2, 3, 1), combined, u @ self.expand.bias).permute(0, 3, 1, 2)
        return torch.cat([z, -z], dim=1)

    def forward(self, features: torch.Tensor) -> PrototypeOutput:
        maps = self.prototype_maps(features)
        pooled, locations = maps.flatten(2).max(dim=2)
        scores = torch.relu(pooled)
        logits = scores @ self.class_weights().T + self.bias
        return PrototypeOutput(logits, scores, maps, locations)

    @torch.no_grad()
    def prune(self, keep: int) -> None:
        """Hard pruning: keep the ``keep`` largest effective weights of each class, fix the rest to 0.

        The mask is a buffer (saved in checkpoints); pruned weights stay zero through later training
        because ``W_eff = relu(W) * mask``.
        """
        if self.config.variant != "side":
            raise SparsexError("only SIDE is pruned; InfoDisent keeps all its weights")
        p = self.config.num_prototypes
        if not 1 <= keep <= p:
            raise SparsexError(f"prune keep A={keep} must be between 1 and the number of prototypes ({p})")
        top = self.class_weights().topk(keep, dim=1).indices
        self.prune_mask.zero_().scatter_(1, top, 1.0)


@MODELS.register("side", description="SIDE: sparse prototypical parts (sigmoid scores sheet, top-A pruning)")
def create_side(**cfg: Any) -> SIDEHead:
    return SIDEHead(SIDEConfig(**{**cfg, "variant": "side"}))


@MODELS.register("infodisent", description="InfoDisent: the dense prototype baseline of SIDE (softmax, signed weights)")
def create_infodisent(**cfg: Any) -> SIDEHead:
    return SIDEHead(SIDEConfig(**{**cfg, "variant": "infodisent"}))
