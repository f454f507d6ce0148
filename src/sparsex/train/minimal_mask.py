"""Training the amortised mask explainer (:class:`~sparsex.explainers.minimal_mask.MinimalMask`)
against a classifier checkpointed by ``sparsex train classifier``.

The run folder has one stage per epoch (``epoch-1``, ...), each an explainer checkpoint, so a
killed run restarts at the epoch it was in, then (unless the explainer setting ``calibrate`` is 0)
a ``calibrate`` stage that chooses the mask-logit threshold on the first ``calibrate`` training
images (:meth:`~sparsex.explainers.minimal_mask.MinimalMask.calibrate_threshold`), then the
fallback areas of the verified readout worth trying
(:meth:`~sparsex.explainers.minimal_mask.MinimalMask.prune_fallback_areas`); both tables go to
the stage's metrics. ``<out>/checkpoint`` is the final explainer, which names its classifier
folder and records its weight hash, threshold and fallback areas. After every stage the test
split's mask area and sufficiency (top-1 kept on ``m * x + (1 - m) * blur(x)``) go to
``metrics.json``.
Under torchrun the U-Net trains data-parallel; rank 0 alone measures and writes.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..checkpoint import Checkpoint, load_checkpoint
from ..checks import check_int
from ..data import create_dataset
from ..data.sampler import dataset_tensors
from ..errors import SparsexError
from ..explainers.minimal_mask import FAMILY, MinimalMask, MinimalMaskConfig
from ..models.specs import is_spec, load_classifier
from .base import TrainConfig, register_trainer
from .loop import open_run
from .run import removes_unstarted_run, run_stages


@dataclass
class MinimalMaskTrainConfig(TrainConfig):
    """The classifier to explain, the images to train on, and the explainer's own settings
    (:class:`MinimalMaskConfig`, flattened on the command line: ``--epochs``, ``--weights.area``)."""

    what = "minimal-mask explainer"

    model: str = ""  # the classifier: a sparsex run folder, timm:NAME, torchvision:NAME or lite0-imagenet
    weights: str | None = None  # weight file of a timm:/torchvision: model (safetensors or a state dict)
    num_classes: int | None = None  # classes of a timm:/torchvision: model (default: its weights' head)
    image_size: int | None = None  # input side of a timm:/torchvision: model (default: its own)
    data: str | None = None  # dataset (default: a run's own; e.g. imagefolder with --root for other models)
    root: str | None = None  # local folder with the dataset's files (default: a run's own)
    data_options: dict[str, Any] | None = None  # dataset settings KEY=VALUE (default: a run's own)
    train_limit: int | None = None  # train on the first N training images (default: all)
    test_limit: int | None = 500  # measure each stage on the first N test images
    device: str = "cpu"  # torch device, e.g. cpu or cuda
    explainer: MinimalMaskConfig = field(default_factory=MinimalMaskConfig, metadata={"flatten": True})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise SparsexError("the explainer needs the classifier it explains (--model SPEC)")
        for name in ("train_limit", "test_limit"):
            check_int(getattr(self, name), name, 1, none_ok=True)
        distributed.check_device(self.device)


def training_data(config: MinimalMaskTrainConfig, model: nn.Module) -> tuple[str, str | None, dict[str, Any]]:
    """The dataset the explainer trains on: the given one, or the run's own (its root unless
    ``--root`` points elsewhere, its options unless others are given). A model named by spec has
    no training data of its own; an image folder is read at its input size unless said otherwise."""
    own = {} if is_spec(config.model) else (load_checkpoint(config.model).config.get("data") or {})
    data = config.data or own.get("name")
    if data is None:
        raise SparsexError(f"model {config.model} records no training data; pass --data (e.g. imagefolder --root DIR)")
    same = data == own.get("name")
    root = config.root if config.root is not None else (own.get("root") if same else None)
    options = dict(config.data_options) if config.data_options is not None else dict(own.get("options") or {} if same else {})
    if data == "imagefolder" and "image_size" not in options and getattr(model, "input_size", None):
        options["image_size"] = model.input_size[0]
    return data, root, options


def load_images(data: str, split: str, root: str | None, options: dict[str, Any], limit: int | None,
                progress: bool = True) -> torch.Tensor:
    """The first ``limit`` images of a dataset split as one tensor ``(N, C, H, W)`` in ``[0, 1]``."""
    return dataset_tensors(create_dataset(data, split=split, root=root, **options), progress, limit)[0]


@torch.no_grad()
def mask_test_metrics(explainer: MinimalMask, images: torch.Tensor, batch_size: int = 128) -> dict[str, float]:
    """Mean mask area and sufficiency of ``explainer`` on ``images``."""
    from ..metrics.faithfulness import mask_area, sufficiency

    masks = torch.cat([explainer.attribute(x) for x in images.split(batch_size)])
    return {"mask_area": float(mask_area(masks).mean()),
            "sufficiency": sufficiency(explainer.model, images, masks, internal_batch_size=batch_size)}


@register_trainer("minimal-mask", MinimalMaskTrainConfig,
                  description="the amortised minimal-mask explainer (activation matching) of a frozen classifier")
@removes_unstarted_run
def train_minimal_mask(config: MinimalMaskTrainConfig, out: str | os.PathLike, overwrite: bool = False,
                       progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a mask-explainer run in ``out``; return the final metrics."""
    distributed.init(config.device)
    spec = {"spec": config.model, "weights": config.weights, "num_classes": config.num_classes,
            "image_size": config.image_size}
    model = load_classifier(config.model, weights=config.weights, num_classes=config.num_classes,
                            image_size=config.image_size).to(config.device)
    mask_config = copy.deepcopy(config.explainer)  # the explainer fills in its defaults (layers)
    distributed.check_batch_size(mask_config.batch_size)
    progress = progress and distributed.is_main()
    stages = [f"epoch-{e + 1}" for e in range(mask_config.epochs)] + (["calibrate"] if mask_config.calibrate else [])
    run = open_run(out, config, stages, overwrite=overwrite)
    data, root, options = training_data(config, model)
    train = load_images(data, "train", root, options, config.train_limit, progress).to(config.device)
    test = load_images(data, "test", root, options, config.test_limit, progress).to(config.device)
    explainer = MinimalMask(model, mask_config, in_chans=train.shape[1])
    explainer.net.to(config.device)
    def resume(checkpoint: Checkpoint) -> None:
        checkpoint.load_into(explainer.net)
        explainer.config.threshold = checkpoint.config["explainer"]["threshold"]
        explainer.config.fallback_areas = checkpoint.config["explainer"]["fallback_areas"]
        explainer.epochs_done = int(checkpoint.config["epochs_done"])
        explainer.image_size = tuple(train.shape[-2:])

    def run_stage(index: int) -> dict[str, Any]:
        if index < mask_config.epochs:
            losses = explainer.fit_epoch(train, progress)
            return {"train_loss": losses["total"], "train_kept": losses["kept"]}
        calibration = explainer.calibrate_threshold(train[:mask_config.calibrate])
        pruning = explainer.prune_fallback_areas(train[:mask_config.calibrate])
        return {"threshold": calibration["threshold"], "calibration": calibration["table"], **pruning}

    def stage_config() -> dict[str, Any]:
        return explainer.checkpoint_config(model=spec)

    return run_stages(run, FAMILY, run_stage=run_stage, evaluate=lambda _index: mask_test_metrics(explainer, test),
                      resume=resume, stage_state=lambda: explainer.net, checkpoint_config=stage_config)
