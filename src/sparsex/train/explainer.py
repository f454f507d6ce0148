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

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..checks import from_settings
from ..data import create_dataset
from ..data.sampler import dataset_tensors
from ..errors import SparsexError
from ..explainers.minimal_mask import FAMILY, MinimalMask, MinimalMaskConfig
from ..models.classifier import load_classifier
from .loop import open_run
from .run import removes_unstarted_run


@dataclass
class ExplainerTrainConfig:
    """``classifier``: the classifier's run or checkpoint folder. ``data``/``root``/``data_options``
    default to the classifier's own; ``train_limit``/``test_limit`` cap the images used (None: all).
    ``explainer``: :class:`MinimalMaskConfig` settings."""

    classifier: str = ""
    data: str | None = None
    root: str | None = None
    data_options: dict[str, Any] | None = None
    train_limit: int | None = None
    test_limit: int | None = 500
    explainer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classifier:
            raise SparsexError("the explainer needs a classifier folder (--classifier DIR)")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SparsexError(f"{name} must be a positive integer or None, got {value!r}")
        MinimalMaskConfig.from_dict(self.explainer)  # validate early

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "ExplainerTrainConfig":
        return from_settings(cls, settings, "explainer")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


@removes_unstarted_run
def train_explainer(config: ExplainerTrainConfig, out: str | os.PathLike, overwrite: bool = False,
                    progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a mask-explainer run in ``out``; return the final metrics."""
    distributed.init("cpu")
    model, classifier_checkpoint = load_classifier(config.classifier)
    mask_config = MinimalMaskConfig.from_dict(config.explainer)
    distributed.check_batch_size(mask_config.batch_size)
    progress = progress and distributed.is_main()
    stages = [f"epoch-{e + 1}" for e in range(mask_config.epochs)] + (["calibrate"] if mask_config.calibrate else [])
    run = open_run(out, config.to_dict(), stages, overwrite=overwrite)
    data_cfg = classifier_checkpoint.config["data"]
    data = config.data or data_cfg["name"]
    root = config.root if config.data else data_cfg.get("root")
    options = config.data_options if config.data_options is not None else (data_cfg.get("options") or {})
    train = load_images(data, "train", root, options, config.train_limit, progress)
    test = load_images(data, "test", root, options, config.test_limit, progress)
    explainer = MinimalMask(model, mask_config, in_chans=train.shape[1])
    classifier_dir = str(Path(classifier_checkpoint.path).resolve())
    start = distributed.from_main(run.last_finished) + 1
    if start > 0:
        stage = run.load_stage(start - 1, FAMILY)
        stage.load_into(explainer.net)
        explainer.config.threshold = stage.config["explainer"]["threshold"]
        explainer.config.fallback_areas = stage.config["explainer"]["fallback_areas"]
        explainer.epochs_done, explainer.image_size = min(start, mask_config.epochs), tuple(train.shape[-2:])

    def record(index: int, metrics: dict[str, Any]) -> None:
        metrics = {**mask_test_metrics(explainer, test), **metrics}
        run.finish_stage(index, explainer.net, FAMILY, explainer.checkpoint_config(classifier=classifier_dir), metrics)

    for index in range(start, mask_config.epochs):
        losses = explainer.fit_epoch(train, progress)
        distributed.main_only(record, index, {"train_loss": losses["total"], "train_kept": losses["kept"]})

    def calibrate() -> None:
        calibration = explainer.calibrate_threshold(train[:mask_config.calibrate])
        pruning = explainer.prune_fallback_areas(train[:mask_config.calibrate])
        record(mask_config.epochs, {"threshold": calibration["threshold"], "calibration": calibration["table"],
                                    **pruning})

    if mask_config.calibrate and start <= mask_config.epochs:
        distributed.main_only(calibrate)
    distributed.main_only(run.finish, explainer.net, FAMILY, explainer.checkpoint_config(classifier=classifier_dir))
    return run.metrics()["final"]
