"""Training a concept dictionary on a frozen backbone's cached features (:mod:`sparsex.dictionaries`).

One stage, ``fit``: the train split's features are cached (:mod:`sparsex.features`), every spatial
cell becomes one sample (or every image, ``pooled``), and the dictionary is fitted to them; a run
killed during the fit starts it again. The checkpoint (family ``dictionary``) holds the
standardisation, the atoms and the encoder. After the fit the test split is measured
(:func:`~sparsex.dictionaries.evaluate.evaluate_dictionary`): FVU, mean L0 and dead atoms on any
dataset, and on one with part masks (the part world) the ground-truth grading with the supervised
dictionary's figures beside it. ``grade`` on a dataset without part masks is refused up front.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..backbones import create_backbone
from ..checks import check_int, check_number
from ..data import create_dataset
from ..dictionaries.evaluate import cache_samples, check_cache_backbone, evaluate_dictionary, ground_truth
from ..dictionaries.methods import Dictionary, check_method
from ..errors import DataError, SparsexError
from ..partworld import CLASS_TABLE
from .base import register_trainer
from .heads import BackboneTrainConfig, cached_split
from .loop import open_run
from .run import removes_unstarted_run, run_stages

FAMILY = "dictionary"


@dataclass
class DictionaryTrainConfig(BackboneTrainConfig):
    """A dictionary run: ``method`` with ``atoms`` atoms and ``k`` non-zero codes per sample (mean L0)
    on the cached features; ``grade`` None grades whenever the dataset has part masks."""

    what = "dictionary"

    method: str = "topk"  # topk, batchtopk, matryoshka, jumprelu, mp, snmf, pca, ica or kmeans
    atoms: int = 256  # dictionary size N
    k: int | None = None  # non-zero codes per sample, the mean L0 (default 8; kmeans: 1)
    epochs: int = 50  # SAE training epochs (other methods: ignored)
    lr: float = 1e-3  # SAE learning rate (Adam)
    batch_size: int = 256  # SAE training batch of samples
    pooled: bool = False  # one sample per image (spatial mean) instead of one per feature-map cell
    min_cover: float = 0.05  # a patch contains a part when the part covers at least this fraction of it
    grade: bool | None = None  # grade against the part masks (default: when the dataset has them)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k is None:
            self.k = 1 if self.method == "kmeans" else 8
        check_method(self.method, self.atoms, self.k)
        check_int(self.epochs, "epochs", 1)
        check_number(self.lr, "lr", 0, 10, low_open=True, high_open=True)
        check_number(self.min_cover, "min_cover", 0, 1, low_open=True)
        if self.grade is not None and not isinstance(self.grade, bool):
            raise SparsexError(f"grade must be true, false or unset, got {self.grade!r}")


def graded(config: DictionaryTrainConfig, dataset) -> bool:
    """Whether the run grades against part masks; ``grade=True`` on a dataset without them raises.
    The concepts and controls are defined on the default class table, so a part world with another
    (e.g. the ``parts-fine`` preset) is not graded: ``grade=True`` raises, unset warns."""
    has_masks = len(dataset) > 0 and "part_masks" in dataset[0]
    if config.grade and not has_masks:
        raise DataError(f"dataset {config.data!r} has no part masks, so a dictionary cannot be graded on it (ground "
                        f"truth exists for the part world only: --data parts); drop --grade for reconstruction, "
                        f"sparsity and galleries")
    world = getattr(dataset, "config", None)
    if has_masks and config.grade is not False and getattr(world, "class_table", CLASS_TABLE) != CLASS_TABLE:
        why = (f"the concept grading is defined on the default {len(CLASS_TABLE)}-class part world; this one has "
               f"{world.classes} classes (variants={world.variants}, absent_slots={world.absent_slots})")
        if config.grade:
            raise DataError(f"{why}; drop --grade for reconstruction, sparsity and galleries")
        warnings.warn(f"{why}: not graded (reconstruction, sparsity and galleries only)", stacklevel=2)
        return False
    return has_masks if config.grade is None else config.grade


@register_trainer("dictionary", DictionaryTrainConfig,
                  description="a concept dictionary (SAE, matching pursuit, semi-NMF, PCA, ICA, k-means) on cached features")
@removes_unstarted_run
def train_dictionary(config: DictionaryTrainConfig, out: str | os.PathLike, overwrite: bool = False,
                     progress: bool = True, remeasure: bool = False) -> dict[str, Any]:
    """Run (or resume) a dictionary run in ``out``; return the final metrics (``fvu``, ``l0``,
    ``dead``, ``train_s``, and when graded ``recovery_auroc``, ``recovered_fraction``, ``purity``,
    ``control``, ``supervised_*``, ...). ``remeasure``: a run finished earlier has its test figures
    measured again with this version's grading (its fitted dictionary and training figures kept)."""
    distributed.init(config.device)
    train_set = create_dataset(config.data, split="train", root=config.root, **config.data_options)
    test_set = create_dataset(config.data, split="test", root=config.root, **config.data_options)
    grade = graded(config, train_set)
    run = open_run(out, config, ["fit"], overwrite=overwrite)
    progress = progress and distributed.is_main()
    backbone_cfg = config.backbone_settings()
    backbone = create_backbone(**backbone_cfg)
    cache_dir = Path(config.cache_dir) if config.cache_dir else run.path.resolve() / "features"
    train = cached_split(config, "train", backbone, cache_dir, progress)
    test = cached_split(config, "test", backbone, cache_dir, progress)
    for cache in (train, test):
        check_cache_backbone(cache, backbone.info.to_dict())
    samples = cache_samples(train, config.pooled)
    check_method(config.method, config.atoms, config.k, samples.shape[1])
    dictionary = Dictionary(config.method, samples.shape[1], config.atoms, config.k)
    truth = ground_truth(train, test, train_set, test_set, config.pooled, config.min_cover, config.seed, progress) \
        if grade else None
    checkpoint_config = {
        "model": dictionary.config(),
        "backbone": backbone_cfg,
        "backbone_info": backbone.info.to_dict(),
        "data": {"name": config.data, "root": config.root, "options": config.data_options, "classes": list(train.classes)},
        "pooled": config.pooled,
        "min_cover": config.min_cover,
        "cache_dir": str(cache_dir),
        "seed": config.seed,
    }

    def run_stage(_index: int) -> dict[str, Any]:
        start = time.perf_counter()
        info = dictionary.fit(samples, config.epochs, config.lr, config.batch_size, config.seed, config.device)
        return {**info, "train_s": time.perf_counter() - start, "train_samples": samples.shape[0]}

    def evaluate(_index: int) -> dict[str, Any]:
        return evaluate_dictionary(dictionary, test, config.pooled, truth)

    torch.manual_seed(config.seed)
    finished = distributed.from_main(run.last_finished) == len(run.stages) - 1
    final = run_stages(run, FAMILY, run_stage=run_stage, evaluate=evaluate, resume=lambda c: c.load_into(dictionary),
                       stage_state=lambda: dictionary, checkpoint_config=lambda: checkpoint_config)
    if remeasure and finished and distributed.is_main():
        final = run.remeasure_stage(len(run.stages) - 1, evaluate(0))
    return final
