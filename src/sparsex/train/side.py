"""Training SIDE (and its dense InfoDisent baseline) on cached backbone features.

SIDE's pipeline, one named stage each (arXiv 2507.19321):

1. ``pretrain``: Asymmetric Loss on the sigmoid outputs (or plain BCE, for the ablation);
2. ``prune``: keep the A largest effective weights per class, fix the rest to zero;
3. ``finetune``: Asymmetric Loss again, under the pruning mask;
4. ``calibrate``: Asymmetric Loss + lambda * OCLA, so that exactly one class ends above t.

The dense baseline has one stage, ``train``: softmax cross-entropy, signed weights, no pruning.
Each stage is checkpointed; a restarted run resumes after the last finished stage
(:class:`~sparsex.train.run.RunFolder`). After every stage the test-split metrics
(:func:`sparsex.metrics.prototype_metrics`) go to ``metrics.json`` and ``stages.md``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..backbones import create_backbone
from ..checks import from_settings
from ..data import create_dataset
from ..errors import CheckpointError, SparsexError
from ..explainers.prototypes import build_gallery, save_gallery
from ..features import FeatureCache, extract_features
from ..losses import asymmetric_loss, binary_cross_entropy_loss, ocla_loss
from ..metrics import prototype_metrics
from ..models import create_model
from ..models.side import SIDEHead
from .loop import predict, train_epochs
from .run import RunFolder

SIDE_STAGES = ("pretrain", "prune", "finetune", "calibrate")
DENSE_STAGES = ("train",)
FAMILY = "side"


@dataclass
class SIDETrainConfig:
    """Everything a SIDE / InfoDisent run depends on. ``variant`` "side" or "dense"."""

    data: str = "parts"
    root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    backbone: str = "lite0"
    pretrained: bool = True
    weights: str | None = None
    layer: int | None = None
    image_size: int | None = None
    variant: str = "side"
    stages: tuple[str, ...] | None = None  # None: all stages of the variant
    expanded_channels: int = 512
    pretrain_loss: str = "asl"  # "asl" or "bce" (ablation)
    pretrain_epochs: int = 20
    pretrain_lr: float = 1e-3
    prune_k: int = 7
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3
    calibrate_epochs: int = 5
    calibrate_lr: float = 5e-4
    dense_epochs: int = 20
    dense_lr: float = 1e-3
    asl_gamma_pos: float = 1.0
    asl_gamma_neg: float = 4.0
    asl_margin: float = 0.05
    ocla_lambda: float = 200.0
    ocla_threshold: float = 0.5
    batch_size: int = 64
    seed: int = 0
    eps: float = 1e-3
    gallery_k: int = 5
    cache_dir: str | None = None  # default: <out>/features
    feature_dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.variant not in ("side", "dense"):
            raise SparsexError(f"unknown SIDE variant {self.variant!r}; valid: side, dense")
        valid = SIDE_STAGES if self.variant == "side" else DENSE_STAGES
        stages = tuple(self.stages) if self.stages else valid
        unknown = [s for s in stages if s not in valid]
        if unknown:
            raise SparsexError(f"unknown stage {unknown[0]!r} for variant {self.variant}; valid stages: {', '.join(valid)}")
        self.stages = tuple(s for s in valid if s in stages)  # canonical order
        if self.pretrain_loss not in ("asl", "bce"):
            raise SparsexError(f"pretrain_loss must be 'asl' or 'bce', got {self.pretrain_loss!r}")
        for name in ("pretrain_epochs", "finetune_epochs", "calibrate_epochs", "dense_epochs", "batch_size",
                     "prune_k", "gallery_k", "expanded_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name.endswith("epochs") else 1):
                raise SparsexError(f"{name} must be a {'non-negative' if name.endswith('epochs') else 'positive'} integer, got {value!r}")
        if self.ocla_lambda < 0:
            raise SparsexError(f"ocla_lambda must be >= 0, got {self.ocla_lambda}")
        if not 0 < self.ocla_threshold < 1:
            raise SparsexError(f"ocla_threshold must be in (0, 1), got {self.ocla_threshold}")
        if self.variant == "side" and "prune" in self.stages and self.prune_k > 2 * self.expanded_channels:
            raise SparsexError(
                f"prune_k A={self.prune_k} exceeds the number of prototypes ({2 * self.expanded_channels} = 2 x expanded_channels)"
            )

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "SIDETrainConfig":
        """Build a config from keyword settings; unknown names raise :class:`SparsexError`."""
        return from_settings(cls, settings, "SIDE")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = list(self.stages)
        return out


def _features(config: SIDETrainConfig, split: str, backbone, cache_dir: Path, progress: bool) -> FeatureCache:
    dataset = create_dataset(config.data, split=split, root=config.root, **config.data_options)
    cache, _ = extract_features(dataset, backbone, cache_dir, dtype=config.feature_dtype, device=config.device,
                                progress=progress)
    return cache


def _stage_loss(config: SIDETrainConfig, stage: str) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    def asl(out, y):
        return asymmetric_loss(out.logits, y, config.asl_gamma_pos, config.asl_gamma_neg, config.asl_margin)

    if stage == "pretrain" and config.pretrain_loss == "bce":
        return lambda out, y: binary_cross_entropy_loss(out.logits, y)
    if stage in ("pretrain", "finetune"):
        return asl
    if stage == "calibrate":
        return lambda out, y: asl(out, y) + ocla_loss(out.logits, y, config.ocla_threshold, config.ocla_lambda)
    return lambda out, y: F.cross_entropy(out.logits, y)  # dense "train"


def evaluate(head: SIDEHead, cache: FeatureCache, config: SIDETrainConfig) -> dict[str, Any]:
    """Test-split metrics of ``head`` on cached features (DESIGN.md definitions)."""
    out = predict(head, cache.features, device=config.device)
    with torch.no_grad():
        weights = head.class_weights().detach().cpu()
        probs = head.probabilities(out["logits"])
    return prototype_metrics(out["scores"], weights, out["logits"], probs, cache.labels, eps=config.eps,
                             threshold=config.ocla_threshold)


def train_side(config: SIDETrainConfig, out: str | os.PathLike, overwrite: bool = False,
               progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the stages of ``config`` in ``out``; return the final metrics."""
    stages = list(config.stages)
    run = RunFolder(out, config.to_dict(), stages, overwrite=overwrite)
    cache_dir = Path(config.cache_dir) if config.cache_dir else run.path / "features"
    backbone_cfg = {"name": config.backbone, "pretrained": config.pretrained, "weights": config.weights,
                    "layer": config.layer, "image_size": config.image_size}
    backbone = create_backbone(**backbone_cfg)
    train = _features(config, "train", backbone, cache_dir, progress)
    test = _features(config, "test", backbone, cache_dir, progress)
    if train.num_classes != test.num_classes:
        raise SparsexError(f"train split has {train.num_classes} classes, test split {test.num_classes}")

    torch.manual_seed(config.seed)
    model_cfg = {"in_channels": train.features.shape[1], "num_classes": train.num_classes,
                 "expanded_channels": config.expanded_channels}
    name = "side" if config.variant == "side" else "infodisent"
    head = create_model(name, **model_cfg).to(config.device)
    checkpoint_config = {
        "model": {"name": name, **model_cfg},
        "backbone": backbone_cfg,
        "data": {"name": config.data, "root": config.root, "options": config.data_options, "classes": train.classes},
        "cache_dir": str(cache_dir),
    }

    start = run.last_finished() + 1
    if start > 0:
        checkpoint = run.load_stage(start - 1, FAMILY)
        if checkpoint.config["model"]["num_classes"] != train.num_classes:
            raise CheckpointError(
                f"stage checkpoint has {checkpoint.config['model']['num_classes']} classes, the data {train.num_classes}"
            )
        checkpoint.load_into(head)
    for index in range(start, len(stages)):
        stage = stages[index]
        info: dict[str, Any] = {}
        if stage == "prune":
            head.prune(config.prune_k)
        else:
            epochs, lr = {"pretrain": (config.pretrain_epochs, config.pretrain_lr),
                          "finetune": (config.finetune_epochs, config.finetune_lr),
                          "calibrate": (config.calibrate_epochs, config.calibrate_lr),
                          "train": (config.dense_epochs, config.dense_lr)}[stage]
            history = train_epochs(head, _stage_loss(config, stage), train.features, train.labels, epochs, lr,
                                   config.batch_size, config.seed + 1000 * index, config.device, progress,
                                   desc=f"{name} {index + 1}/{len(stages)} {stage}")
            info["train_loss"] = history[-1] if history else None
        run.finish_stage(index, head, FAMILY, checkpoint_config, {**evaluate(head, test, config), **info})
    final = run.finish(head, FAMILY, checkpoint_config)
    save_gallery(final, build_gallery(head, train, k=config.gallery_k))
    return run.metrics()["final"]
