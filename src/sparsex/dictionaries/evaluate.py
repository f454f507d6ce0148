"""Everything a dictionary run measures on the test split: reconstruction and sparsity always,
and on the part world the ground-truth grading (concept recovery, purity, control), side by side
with the supervised reference dictionary fitted on the train split's concepts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DataError
from ..features import FeatureCache
from ..models.classifier import LinearProbe
from ..partworld import PART_NAMES, PART_VARIANTS
from .concepts import dataset_concepts, leaf_concepts, supervised_dictionary
from .control import controls, dictionary_edit, slot_variants, supervised_edit
from .grading import concept_metrics, reconstruction_metrics
from .methods import Dictionary, check_finite, patches

PROBE_EPOCHS, PROBE_LR = 100, 1e-2  # the linear probes of the control edits (as in benchmarks/protosvit_parts.py)


def check_cache_backbone(cache: FeatureCache, backbone_info: dict[str, Any]) -> None:
    """Refuse a feature cache of another backbone (or layer, or input size) than ``backbone_info``."""
    cached = cache.key.get("backbone", {})
    if cached != json.loads(json.dumps(backbone_info)):  # as stored in the cache key
        raise DataError(f"feature cache {cache.path} holds features of backbone {cached.get('name')!r} "
                        f"(layer {cached.get('layer')}), this dictionary's are {backbone_info.get('name')!r} "
                        f"(layer {backbone_info.get('layer')}); use the run's own backbone or another cache folder")


def cache_samples(cache: FeatureCache, pooled: bool) -> torch.Tensor:
    """The cache's samples (:func:`~sparsex.dictionaries.patches`), refused when not finite."""
    samples = patches(cache.features, pooled)
    check_finite(samples, f"feature cache {cache.path}")
    return samples


def patches_per_image(cache: FeatureCache, pooled: bool) -> int:
    return 1 if pooled else cache.features.shape[2] * cache.features.shape[3]


@dataclass
class GroundTruth:
    """What grading needs besides the dictionary: the concepts of the train and test samples, the
    frozen linear probes on the pooled features (the class, and every slot's variant), and the
    supervised reference dictionary."""

    train_concepts: torch.Tensor  # (P_train, K) bool
    test_concepts: torch.Tensor  # (P_test, K) bool
    probe: torch.nn.Linear
    variant_probes: list[torch.nn.Linear]  # one per part slot
    supervised_atoms: torch.Tensor  # (K, C)
    train_mean: torch.Tensor  # (C,)
    supervised: dict[str, Any]  # the supervised dictionary's test figures (supervised_metrics)


#: the last ground truth computed, by its inputs: the runs of several methods on one world (a benchmark) share it
_LAST_TRUTH: dict[tuple, GroundTruth] = {}


def ground_truth(train: FeatureCache, test: FeatureCache, train_dataset, test_dataset, pooled: bool, min_cover: float,
                 seed: int, progress: bool = False) -> GroundTruth:
    """The concepts of both splits (from the part masks: a dataset without them raises), the probes,
    the supervised dictionary and its test figures. The last one computed is kept in memory and
    returned again for the same feature caches (by path and key), ``pooled``, ``min_cover`` and ``seed``."""
    key = (str(train.path), json.dumps(train.key, sort_keys=True), str(test.path), json.dumps(test.key, sort_keys=True),
           pooled, min_cover, seed)
    if key not in _LAST_TRUTH:
        _LAST_TRUTH.clear()
        _LAST_TRUTH[key] = _ground_truth(train, test, train_dataset, test_dataset, pooled, min_cover, seed, progress)
    return _LAST_TRUTH[key]


def _ground_truth(train: FeatureCache, test: FeatureCache, train_dataset, test_dataset, pooled: bool, min_cover: float,
                  seed: int, progress: bool) -> GroundTruth:
    from ..train.loop import train_epochs  # here: sparsex.train imports this module (its dictionary trainer)

    grid = (1, 1) if pooled else tuple(train.features.shape[2:])
    train_concepts = dataset_concepts(train_dataset, grid, min_cover, f"{train_dataset.name}/train", progress)
    test_concepts = dataset_concepts(test_dataset, grid, min_cover, f"{test_dataset.name}/test", progress)

    def probe(labels: torch.Tensor, classes: int) -> torch.nn.Linear:
        torch.manual_seed(seed)
        model = LinearProbe(train.features.shape[1], classes)
        train_epochs(model, lambda logits, y, _epoch: torch.nn.functional.cross_entropy(logits, y), train.features.float(),
                     labels, PROBE_EPOCHS, PROBE_LR, batch_size=64, seed=seed, progress=False)
        return model.linear.eval()

    variant_probes = [probe(slot_variants(train.labels, slot), len(PART_VARIANTS[name])) for slot, name in enumerate(PART_NAMES)]
    train_x = cache_samples(train, pooled)
    atoms = torch.nan_to_num(supervised_dictionary(train_x, train_concepts), nan=0.0)
    train_mean = train_x.mean(0)
    class_probe = probe(train.labels, train.num_classes)
    return GroundTruth(train_concepts, test_concepts, class_probe, variant_probes, atoms, train_mean,
                       supervised_metrics(test, pooled, test_concepts, class_probe, variant_probes, atoms, train_mean))


def supervised_metrics(test: FeatureCache, pooled: bool, concepts: torch.Tensor, probe: torch.nn.Linear,
                       variant_probes: list[torch.nn.Linear], atoms: torch.Tensor, train_mean: torch.Tensor) -> dict[str, Any]:
    """The supervised dictionary ``atoms`` graded like a learned one on the test split (its ``concepts``): its codes
    are the projections ``<x - mean, u_c> / ||u_c||``; its control edit is
    :func:`~sparsex.dictionaries.control.supervised_edit`."""
    test_x = cache_samples(test, pooled)
    directions = atoms / atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)
    codes = (test_x - train_mean) @ directions.T
    metrics = concept_metrics(codes, concepts, leaf_concepts())
    per_image = patches_per_image(test, pooled)
    control = controls(test_x.view(-1, per_image, test_x.shape[1]), test.labels, probe, variant_probes,
                       supervised_edit(atoms, concepts, per_image))
    return {**metrics, **control}


def evaluate_dictionary(dictionary: Dictionary, test: FeatureCache, pooled: bool,
                        truth: GroundTruth | None = None) -> dict[str, Any]:
    """Reconstruction and sparsity of ``dictionary`` on the test split; with ``truth`` also the
    concept grading and control, and ``supervised_*`` the reference's (nested details under
    ``concepts``)."""
    test_x = cache_samples(test, pooled)
    codes = dictionary.encode(test_x)
    metrics: dict[str, Any] = reconstruction_metrics(dictionary, test_x, codes)
    if truth is None:
        return metrics
    concepts = concept_metrics(codes, truth.test_concepts, leaf_concepts(), dictionary.signed)
    per_image = patches_per_image(test, pooled)
    edit = dictionary_edit(dictionary, codes, truth.test_concepts, concepts["best_atom"], per_image)
    control = controls(test_x.view(-1, per_image, test_x.shape[1]), test.labels, truth.probe, truth.variant_probes, edit)
    supervised = truth.supervised
    scalars = ("recovery_auroc", "recovery_f1", "recovered_fraction", "recovered_distinct", "purity", "unmatched")
    return {**metrics, **{key: concepts[key] for key in scalars}, **control,
            **{f"supervised_{key}": supervised[key] for key in (*scalars, "control", "variant_control")},
            "concepts": {key: value for key, value in concepts.items() if key not in scalars},
            "supervised_concepts": {"best_auroc": supervised["best_auroc"], "best_f1": supervised["best_f1"]}}
