"""Training InfoDisent, SIDE's dense baseline, on cached backbone features.

One stage, ``train``: softmax cross-entropy on the logits of the prototype head with signed class
weights and no pruning (:func:`~sparsex.models.side.create_infodisent`). The head is SIDE's
(prototype expansion, orthogonal disentanglement, sparse pooling), so the two differ only in what
SIDE adds: sigmoid outputs, pruning, ASL and OCLA. The stage is checkpointed and evaluated on the
test split like every head's (:func:`~sparsex.train.heads.train_head_stages`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch.nn.functional as F

from ..checks import check_number
from ..features import FeatureCache
from ..models.side import SIDEHead
from .base import register_trainer
from .heads import HeadTrainConfig, train_head_stages
from .loop import train_epochs

FAMILY = "infodisent"


@dataclass
class InfoDisentTrainConfig(HeadTrainConfig):
    """Everything an InfoDisent run depends on (its data and backbone settings: :class:`HeadTrainConfig`)."""

    what = "InfoDisent"

    expanded_channels: int = 512  # C' channels after the prototype expansion (P = 2 C' prototypes)
    epochs: int = 20  # training epochs
    lr: float = 1e-3  # learning rate

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_counts("epochs", "expanded_channels")
        check_number(self.lr, "lr", 0, low_open=True)


@register_trainer("infodisent", InfoDisentTrainConfig,
                  description="InfoDisent: SIDE's dense baseline (softmax, signed weights, no pruning)")
def train_infodisent(config: InfoDisentTrainConfig, out: str | os.PathLike, overwrite: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Run (or resume) InfoDisent in ``out``; return the final metrics."""

    def run_stage(head: SIDEHead, stage: str, index: int, features: Callable[[str], FeatureCache]) -> dict[str, Any]:
        train = features("train")
        history = train_epochs(head, lambda out, y, _epoch: F.cross_entropy(out.logits, y), train.features,
                               train.labels, config.epochs, config.lr, config.batch_size, config.seed + 1000 * index,
                               config.device, progress, desc="infodisent", amp=config.amp)
        return {"train_loss": history[-1] if history else None}

    return train_head_stages(config, out, ["train"], FAMILY, "infodisent",
                             {"expanded_channels": config.expanded_channels}, run_stage, overwrite=overwrite,
                             progress=progress)
