"""Training the plain classifier: the dense baseline, and the model post-hoc explainers explain.

Two modes, one checkpoint format (:class:`~sparsex.models.classifier.ImageClassifier`, family
``classifier``, backbone weights included):

- ``probe``: a frozen pretrained backbone and a :class:`~sparsex.models.classifier.LinearProbe`
  trained on the cached features (the feature cache of :mod:`sparsex.features`); one stage,
  ``train``.
- ``end-to-end``: backbone and head trained together on the images (a ``small-cnn`` on 28x28
  data); one stage per epoch (``epoch-1``, ``epoch-2``, ...), each checkpointed, so a killed run
  loses at most one epoch. Every epoch starts a fresh Adam, which makes a resumed run equal to an
  uninterrupted one.

Loss: softmax cross-entropy. After every stage the test accuracy and abstention fraction go to ``metrics.json``.

Under torchrun both modes train data-parallel (:func:`~sparsex.train.loop.train_epochs`); rank 0
alone measures and writes. The small CNN's BatchNorm normalises each rank's part of the batch on
its own (plain DDP, no synchronised BatchNorm), so an end-to-end run on N processes is close to,
not equal to, a single process's; the probe has no BatchNorm and matches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import distributed
from ..backbones import create_backbone
from ..checks import check_int, check_number
from ..data import create_dataset
from ..data.sampler import dataset_tensors
from ..errors import SparsexError
from ..metrics import accuracy_with_abstentions
from ..models.classifier import FAMILY, ImageClassifier, LinearProbe
from .base import register_trainer
from .heads import BackboneTrainConfig, cached_split
from .loop import open_run, predict, train_epochs
from .run import removes_unstarted_run, run_stages

MODES = ("probe", "end-to-end")


@dataclass
class ClassifierTrainConfig(BackboneTrainConfig):
    """A plain classifier run. ``mode`` None picks ``end-to-end`` for ``small-cnn`` and ``probe``
    otherwise; ``epochs``/``lr`` apply to either mode."""

    what = "classifier"

    mode: str | None = None  # probe (frozen backbone, cached features) or end-to-end (default: end-to-end for small-cnn)
    epochs: int = 20  # training epochs
    lr: float = 1e-3  # learning rate

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode is None:
            self.mode = "end-to-end" if self.backbone == "small-cnn" else "probe"
        if self.mode not in MODES:
            raise SparsexError(f"unknown classifier mode {self.mode!r}; valid: {', '.join(MODES)}")
        check_int(self.epochs, "epochs", 1)
        check_number(self.lr, "lr", 0, 10, low_open=True, high_open=True)

    @property
    def stages(self) -> list[str]:
        return ["train"] if self.mode == "probe" else [f"epoch-{e + 1}" for e in range(self.epochs)]


def _images(config: ClassifierTrainConfig, split: str, progress: bool):
    """All images and labels of a split as tensors ``(N, C, H, W)``, ``(N,)`` (end-to-end mode)."""
    dataset = create_dataset(config.data, split=split, root=config.root, **config.data_options)
    return (*dataset_tensors(dataset, progress), dataset.classes)


@register_trainer("classifier", ClassifierTrainConfig,
                  description="a plain classifier: linear probe on a frozen backbone, or a small CNN end to end")
@removes_unstarted_run
def train_classifier(config: ClassifierTrainConfig, out: str | os.PathLike, overwrite: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a classifier run in ``out``; return the final metrics (``test_accuracy``,
    ``test_abstention``: :func:`~sparsex.metrics.accuracy_with_abstentions`, ...)."""
    distributed.init(config.device)
    distributed.check_batch_size(config.batch_size)
    run = open_run(out, config, config.stages, overwrite=overwrite)
    progress = progress and distributed.is_main()
    backbone_cfg = config.backbone_settings()
    end_to_end = config.mode == "end-to-end"
    torch.manual_seed(config.seed)
    backbone = create_backbone(**backbone_cfg, freeze=not end_to_end, seed=config.seed)
    if end_to_end:
        train_x, train_y, classes = _images(config, "train", progress)
        test_x, test_y, _ = _images(config, "test", progress)
    else:
        cache_dir = Path(config.cache_dir) if config.cache_dir else run.path.resolve() / "features"
        train_cache = cached_split(config, "train", backbone, cache_dir, progress)
        test_cache = cached_split(config, "test", backbone, cache_dir, progress)
        train_x, train_y, classes = train_cache.features, train_cache.labels, train_cache.classes
        test_x, test_y = test_cache.features, test_cache.labels
    num_classes = len(classes)
    if int(test_y.max()) >= num_classes:
        raise SparsexError(f"test split has labels up to {int(test_y.max())}, the train split {num_classes} classes")

    head = LinearProbe(backbone.info.channels, num_classes)
    model = ImageClassifier(backbone, head).to(config.device)
    trained = model if end_to_end else head  # what the optimiser sees, on images or on cached features
    checkpoint_config = {
        "model": {"name": "linear-probe", "in_channels": backbone.info.channels, "num_classes": num_classes},
        "backbone": backbone_cfg,
        "data": {"name": config.data, "root": config.root, "options": config.data_options, "classes": list(classes)},
        "mode": config.mode,
    }

    def cross_entropy(logits, y, _epoch):
        return F.cross_entropy(logits, y)

    def run_stage(index: int) -> dict[str, Any]:
        history = train_epochs(trained, cross_entropy, train_x, train_y, 1 if end_to_end else config.epochs, config.lr,
                               config.batch_size, config.seed + index, config.device, progress,
                               desc=f"classifier {config.stages[index]}/{len(config.stages)}", amp=config.amp)
        return {"train_loss": history[-1] if history else None}

    def evaluate(_index: int) -> dict[str, Any]:
        logits = predict(trained, test_x, device=config.device, keys=("logits",))["logits"]
        scores = accuracy_with_abstentions(logits, test_y)
        return {"test_accuracy": scores["accuracy"], "test_abstention": scores["abstention"]}

    return run_stages(run, FAMILY, run_stage=run_stage, evaluate=evaluate, resume=lambda c: c.load_into(model),
                      stage_state=lambda: model, checkpoint_config=lambda: checkpoint_config)
