"""What every prototype head trained on cached backbone features shares: the common settings
(:class:`HeadTrainConfig`), the test-split evaluation (:func:`evaluate_head`) and the staged run
(:func:`train_head_stages`: features cached once, one checkpoint per named stage, resume after
the last finished stage, the final checkpoint with its prototype gallery), under torchrun on
every rank with rank 0 evaluating and writing (:mod:`sparsex.distributed`).

A method's trainer (``train/side.py``, ``train/protosvit.py``) subclasses the config with its own
settings and supplies one function that runs a named stage on the head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import distributed
from ..backbones import create_backbone
from ..checkpoint import Checkpoint
from ..checks import check_int, check_number
from ..data import create_dataset
from ..errors import CheckpointError, MissingSplitError, SparsexError
from ..features import FeatureCache, extract_features
from ..metrics import accuracy_with_abstentions, prototype_metrics
from ..models import contribution_threshold, create_model
from ..models.gallery import build_gallery, save_gallery
from .base import TrainConfig
from .loop import open_run, predict
from .run import removes_unstarted_run, run_stages

#: ``run_stage(head, stage, index, features)``: ``features(split)`` is that split's cached features (loaded once)
StageFn = Callable[[nn.Module, str, int, Callable[[str], FeatureCache]], dict[str, Any]]


@dataclass
class BackboneTrainConfig(TrainConfig):
    """Data, backbone, feature cache and bookkeeping settings shared by every trainer of a head on
    a frozen backbone's cached features (and by the classifier's). ``batch_size`` is the global
    batch of a distributed run (a multiple of the number of processes)."""

    data: str = "parts"  # dataset name (sparsex datasets)
    root: str | None = None  # local folder with the dataset's files
    data_options: dict[str, Any] = field(default_factory=dict)  # dataset settings KEY=VALUE
    backbone: str = "lite0"  # frozen backbone (sparsex backbones; any timm name)
    pretrained: bool = True  # load the backbone's bundled or given weights (--no-pretrained: random)
    weights: str | None = None  # local weight file for the backbone
    layer: int | None = None  # backbone feature layer index (default: the final features)
    image_size: int | None = None  # backbone input side in pixels (default: the model's own)
    batch_size: int = 64  # training batch (global, under torchrun)
    seed: int = 0  # seed of the initialisation and the batch order
    cache_dir: str | None = None  # feature cache folder (default: <out>/features)
    feature_dtype: str = "float32"  # stored feature dtype: float32, float16 or bfloat16
    device: str = "cpu"  # torch device, e.g. cpu or cuda
    amp: bool = False  # mixed precision (bfloat16 autocast; float16 with a scaler on older GPUs)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_counts("batch_size")
        check_int(self.seed, "seed", 0)
        distributed.check_device(self.device)
        if not isinstance(self.amp, bool):
            raise SparsexError(f"amp must be true or false, got {self.amp!r}")

    def check_counts(self, *names: str) -> None:
        """Settings named ``*_epochs`` must be integers >= 0, the others integers >= 1."""
        for name in names:
            check_int(getattr(self, name), name, 0 if name.endswith("epochs") else 1)

    def backbone_settings(self) -> dict[str, Any]:
        return {"name": self.backbone, "pretrained": self.pretrained, "weights": self.weights, "layer": self.layer,
                "image_size": self.image_size}


@dataclass
class HeadTrainConfig(BackboneTrainConfig):
    """:class:`BackboneTrainConfig` and what a prototype head's run adds: the metrics' threshold
    and the gallery kept for explanations."""

    eps: float = 1e-3  # contribution threshold of the sparsity metrics (docs/metrics.md)
    gallery_k: int = 5  # training items kept per prototype for explanations

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_counts("gallery_k")
        check_number(self.eps, "eps", 0)


def evaluate_head(head: nn.Module, cache: FeatureCache, eps: float = 1e-3, threshold: float = 0.5,
                  device: str | torch.device = "cpu") -> dict[str, Any]:
    """The prototype metrics (docs/metrics.md) of ``head`` on the cached features of one split, led by
    the accuracy with abstentions (:func:`~sparsex.metrics.accuracy_with_abstentions`)."""
    out = predict(head, cache.features, device=device)
    with torch.no_grad():
        weights = head.class_weights().detach().cpu()
        probs = head.probabilities(out["logits"])
    metrics = prototype_metrics(out["scores"], weights, out["logits"], probs, cache.labels, eps=eps, threshold=threshold,
                                contribution_eps=contribution_threshold(head, eps))
    scores = accuracy_with_abstentions(out["logits"], cache.labels)  # replaces prototype_metrics' plain arg-max accuracy
    return {**scores, **{key: value for key, value in metrics.items() if key not in scores}}


def cached_split(config: BackboneTrainConfig, split: str, backbone, cache_dir: Path, progress: bool) -> FeatureCache:
    """The backbone features of ``config``'s dataset split, from the cache (extracted on first use);
    :class:`~sparsex.errors.MissingSplitError` for a split the data does not have or that is empty."""
    dataset = create_dataset(config.data, split=split, root=config.root, **config.data_options)
    if len(dataset) == 0:
        raise MissingSplitError(f"dataset {config.data!r} has no images in split {split!r}")
    cache, _ = extract_features(dataset, backbone, cache_dir, dtype=config.feature_dtype, device=config.device,
                                progress=progress)
    return cache


@removes_unstarted_run
def train_head_stages(config: HeadTrainConfig, out: str | os.PathLike, stages: list[str], family: str,
                      model_name: str, model_settings: dict[str, Any], run_stage: StageFn, overwrite: bool = False,
                      progress: bool = True, threshold: float = 0.5) -> dict[str, Any]:
    """Run (or resume) ``stages`` of a head in the run folder ``out``; return the final metrics.

    The head is ``create_model(model_name, in_channels=C, num_classes=K, **model_settings)`` on
    the cached train features ``(N, C, h, w)``. ``run_stage(head, stage, index, features)``
    trains or edits the head in place and returns extra numbers for the stage's record (e.g. the
    final training loss); ``features(split)`` gives the cached features of a split (``"train"``,
    or a held-out one such as ``"val"``, extracted on first use). After every stage the head is
    checkpointed and evaluated on the test split (``threshold`` is the OCLA probability threshold).

    Under torchrun every rank trains (data parallel); rank 0 alone evaluates, writes the
    checkpoints, ``metrics.json`` and the gallery, and decides where a resumed run starts.
    """
    distributed.init(config.device)
    distributed.check_batch_size(config.batch_size)
    run = open_run(out, config, stages, overwrite=overwrite)
    progress = progress and distributed.is_main()
    cache_dir = Path(config.cache_dir) if config.cache_dir else run.path.resolve() / "features"
    backbone_cfg = config.backbone_settings()
    backbone = create_backbone(**backbone_cfg)
    splits: dict[str, FeatureCache] = {}

    def features(split: str) -> FeatureCache:
        if split not in splits:
            splits[split] = cached_split(config, split, backbone, cache_dir, progress)
        return splits[split]

    train, test = features("train"), features("test")
    if train.num_classes != test.num_classes:
        raise SparsexError(f"train split has {train.num_classes} classes, test split {test.num_classes}")

    torch.manual_seed(config.seed)
    model_cfg = {"in_channels": train.features.shape[1], "num_classes": train.num_classes, **model_settings}
    head = create_model(model_name, **model_cfg).to(config.device)
    checkpoint_config = {
        "model": {"name": model_name, **model_cfg},
        "backbone": backbone_cfg,
        "data": {"name": config.data, "root": config.root, "options": config.data_options, "classes": train.classes},
        "cache_dir": str(cache_dir),
    }

    def resume(checkpoint: Checkpoint) -> None:
        if checkpoint.config["model"]["num_classes"] != train.num_classes:
            raise CheckpointError(
                f"stage checkpoint has {checkpoint.config['model']['num_classes']} classes, the data {train.num_classes}"
            )
        checkpoint.load_into(head)

    return run_stages(
        run, family, run_stage=lambda index: run_stage(head, stages[index], index, features),
        evaluate=lambda index: evaluate_head(head, test, config.eps, threshold, config.device),
        resume=resume, stage_state=lambda: head, checkpoint_config=lambda: checkpoint_config,
        finish=lambda path: save_gallery(path, build_gallery(head, train, k=config.gallery_k)))
