"""Area "metrics": every metric on broken inputs and with nonsense settings."""

from __future__ import annotations

from typing import Any

import torch

from sparsex import metrics as M
from sparsex import partworld as P
from sparsex.data import create_dataset
from sparsex.metrics import latent as L

from .fixtures import Fixtures
from .tensors import Arg, Target, class_labels, rand, tensor_area


def _model_inputs(fx: Fixtures) -> dict[str, Any]:
    """The tiny classifier and two 1x8x8 images: the inputs every metric of a model shares."""
    return {"model": fx.classifier(), "x": rand(2, 1, 8, 8, seed=2)}


def _metric_targets() -> list[Target]:
    """Every metric: faithfulness, prototype, latent, consistency and part-world metrics."""
    pos_int = [0, -1, 2.5, "3", True]
    eps_bad = [float("nan"), -1.0, float("inf"), "x", None]
    return [
        Target("mask_area", M.mask_area, lambda fx: {"masks": rand(2, 1, 4, 4, seed=3)},
               {"masks": Arg("mask", flex_ndim=True)}),
        Target("MaskArea", lambda masks: M.MaskArea()(masks), lambda fx: {"masks": rand(2, 4, 4, seed=3)},
               {"masks": Arg("mask", flex_ndim=True)}),
        Target("sufficiency", M.sufficiency,
               lambda fx: {**_model_inputs(fx), "masks": (rand(2, 1, 8, 8, seed=4) > 0.5).float()},
               {"x": Arg(), "masks": Arg("mask", flex_ndim=True)},
               {"baseline": ["bogus", float("nan"), True, [0.5]], "internal_batch_size": pos_int}),
        Target("Sufficiency", lambda model, x, masks, baseline=None: M.Sufficiency(baseline)(model, x, masks),
               lambda fx: {**_model_inputs(fx), "masks": torch.ones(2, 1, 8, 8)}, {"masks": Arg("mask", flex_ndim=True)},
               {"baseline": ["bogus", float("inf"), torch.zeros(2, 1, 8, 8)]}),
        Target("deletion_auc", M.deletion_auc,
               lambda fx: {**_model_inputs(fx), "attributions": rand(2, 1, 8, 8, seed=5), "steps": 4},
               {"x": Arg(), "attributions": Arg(flex_ndim=True)},
               {"steps": pos_int, "target": [-1, 10, 1.5, [0]], "baseline": ["bogus", float("nan")],
                "internal_batch_size": pos_int}),
        Target("insertion_auc", M.insertion_auc,
               lambda fx: {**_model_inputs(fx), "attributions": rand(2, 8, 8, seed=5), "steps": 3},
               {"x": Arg(), "attributions": Arg(flex_ndim=True)}, {"target": [10, "x"]}),
        Target("perturbation_curve", M.perturbation_curve,
               lambda fx: {**_model_inputs(fx), "attributions": rand(2, 1, 8, 8, seed=5), "steps": 2},
               {"attributions": Arg(flex_ndim=True)}, {"mode": ["bogus", None, 1]}),
        Target("DeletionAUC", lambda model, x, attributions, steps=3: M.DeletionAUC(steps)(model, x, attributions),
               lambda fx: {**_model_inputs(fx), "attributions": rand(2, 1, 8, 8, seed=5)},
               {"attributions": Arg(flex_ndim=True)}, {"steps": pos_int}),
        Target("global_size", M.global_size, lambda fx: {"weights": rand(3, 5, seed=6)},
               {"weights": Arg()}, {"eps": eps_bad}),
        Target("local_size", M.local_size,
               lambda fx: {"scores": rand(4, 5, seed=7), "weights": rand(3, 5, seed=6), "predicted": class_labels(4, 3)},
               {"scores": Arg(), "weights": Arg(), "predicted": Arg("int")}, {"eps": eps_bad}),
        Target("local_size_all_classes", M.local_size_all_classes,
               lambda fx: {"scores": rand(4, 5, seed=7), "weights": rand(3, 5, seed=6)},
               {"scores": Arg(), "weights": Arg()}, {"eps": eps_bad}),
        Target("ocla_score", M.ocla_score, lambda fx: {"probs": rand(4, 3, seed=8), "targets": class_labels(4, 3)},
               {"probs": Arg(), "targets": Arg("int")}, {"threshold": [0, 1, float("nan"), -0.5, "x"]}),
        Target("classes_above_histogram", M.classes_above_histogram, lambda fx: {"probs": rand(4, 3, seed=8)},
               {"probs": Arg()}, {"threshold": [1.5, float("nan")], "max_bins": [0, -1, 1.5, "x"]}),
        Target("accuracy", M.accuracy, lambda fx: {"logits": rand(4, 3, seed=9), "targets": class_labels(4, 3)},
               {"logits": Arg(), "targets": Arg("int")}),
        Target("zero_weight_fraction", M.zero_weight_fraction, lambda fx: {"weights": rand(3, 5, seed=6)},
               {"weights": Arg()}, {"eps": eps_bad}),
        Target("prototype_metrics", M.prototype_metrics,
               lambda fx: {"scores": rand(4, 5, seed=7), "weights": rand(3, 5, seed=6), "logits": rand(4, 3, seed=9),
                           "probs": rand(4, 3, seed=8), "targets": class_labels(4, 3)},
               {"scores": Arg(), "weights": Arg(), "logits": Arg(), "probs": Arg(), "targets": Arg("int")},
               {"eps": eps_bad, "threshold": [0, 2], "contribution_eps": [float("nan"), -1.0]}),
        Target("active_dims", L.active_dims, lambda fx: {"gamma": rand(4, 6, seed=10)}, {"gamma": Arg()},
               {"threshold": [float("nan"), -1.0, 2.0, "x", None]}),
        Target("within_class_jsd", L.within_class_jsd,
               lambda fx: {"gamma": rand(6, 4, seed=10), "labels": class_labels(6, 2)}, {"gamma": Arg(), "labels": Arg("int")},
               {"max_pairs": [0, -5, 2.5, "x"], "seed": ["x", 1.5, None]}),
        Target("class_mean_gamma", L.class_mean_gamma,
               lambda fx: {"gamma": rand(6, 4, seed=10), "labels": class_labels(6, 2), "num_classes": 3},
               {"gamma": Arg(), "labels": Arg("int")}, {"num_classes": [0, -1, 1.5, "3", None]}, nan_out=True),
        Target("class_correlation", L.class_correlation,
               lambda fx: {"class_means": L.class_mean_gamma(rand(6, 4, seed=10), class_labels(6, 2), 3)},
               {"class_means": Arg(nan_ok=True)}, nan_out=True),
        Target("classify_dimensions", L.classify_dimensions,
               lambda fx: {"class_means": L.class_mean_gamma(rand(6, 4, seed=10), class_labels(6, 2), 3), "classes": ["a", "b", "c"]},
               {"class_means": Arg(nan_ok=True)}, {"classes": [["a"], "abc", None], "threshold": [float("nan"), "x"]}),
        Target("group_correlation", L.group_correlation,
               lambda fx: {"corr": L.class_correlation(rand(3, 4, seed=11)), "classes": ["a", "b", "c"], "group": ["a", "b"]},
               {"corr": Arg("any-real", nan_ok=True, sequence_ok=True)},
               {"group": [["a"], ["z", "a"], "ab", None], "classes": [["a", "b"], None, "abc"]},
               nan_out=True),
        Target("linear_probe_accuracy", L.linear_probe_accuracy,
               lambda fx: {"train_gamma": rand(8, 3, seed=12), "train_labels": class_labels(8, 2), "test_gamma": rand(4, 3, seed=13),
                           "test_labels": class_labels(4, 2), "max_iter": 20},
               {"train_gamma": Arg(), "train_labels": Arg("int"), "test_gamma": Arg(), "test_labels": Arg("int")},
               {"max_iter": [0, -1, 2.5, "x"], "l2": [0, -1.0, float("nan"), float("inf"), "x"]}),
        Target("latent_metrics", L.latent_metrics,
               lambda fx: {"gamma": rand(6, 3, seed=14), "labels": class_labels(6, 2), "classes": ["a", "b", "c"],
                           "train_gamma": rand(8, 3, seed=12), "train_labels": class_labels(8, 2), "probe_max_iter": 20},
               {"gamma": Arg(), "labels": Arg("int"), "train_gamma": Arg(), "train_labels": Arg("int")},
               {"jsd_pairs": [0, -1], "classes": [["a"], None]}, nan_out=True),
        Target("prototype_classes", M.prototype_classes, lambda fx: {"weights": rand(3, 5, seed=6)},
               {"weights": Arg()}, {"eps": eps_bad}),
        Target("part_vectors", M.part_vectors,
               lambda fx: {"locations": torch.tensor([[0, 3, 1], [2, 2, 0]]), "feature_size": (2, 2),
                           "part_masks": rand(2, 4, 8, 8, seed=15) > 0.7},
               {"locations": Arg("int"), "part_masks": Arg("bool")},
               {"feature_size": [(0, 2), (2,), "2x2", (2.5, 2), None, (1, 1)], "region": [0, -0.5, 2.0, float("nan"), "x"],
                "min_overlap": [0, -1, 1.5]}),
        Target("part_frequencies", M.part_frequencies,
               lambda fx: {"part_vecs": rand(4, 5, 3, seed=16) > 0.5, "labels": class_labels(4, 2),
                           "prototype_classes": torch.tensor([0, 1, -1, 0, 1]), "visible": rand(4, 3, seed=17) > 0.2},
               {"part_vecs": Arg("bool"), "labels": Arg("int"), "prototype_classes": Arg("int"),
                "visible": Arg("bool", optional=True)},
               nan_out=True),
        Target("consistency", M.consistency,
               lambda fx: {"part_vecs": rand(4, 5, 3, seed=16) > 0.5, "labels": class_labels(4, 2),
                           "prototype_classes": torch.tensor([0, 1, -1, 0, 1])},
               {"part_vecs": Arg("bool"), "labels": Arg("int"), "prototype_classes": Arg("int")},
               {"mu": [0, -0.5, 1.5, float("nan"), "x"]}),
        Target("stability", M.stability,
               lambda fx: {"part_vecs": rand(4, 5, 3, seed=16) > 0.5, "noisy_part_vecs": rand(4, 5, 3, seed=18) > 0.5,
                           "labels": class_labels(4, 2), "prototype_classes": torch.tensor([0, 1, -1, 0, 1])},
               {"part_vecs": Arg("bool"), "noisy_part_vecs": Arg("bool"), "labels": Arg("int"), "prototype_classes": Arg("int")}),
        Target("part_importances", P.part_importances,
               lambda fx: {"maps": rand(2, 1, 8, 8, seed=19), "part_masks": rand(2, 3, 8, 8, seed=20) > 0.6, "dilation": 3},
               {"maps": Arg(flex_ndim=True), "part_masks": Arg("bool")}, {"dilation": [0, 2, -3, 1.5, "5"]}),
        Target("important_parts", P.important_parts,
               lambda fx: {"importances": rand(2, 3, seed=21), "totals": rand(2, seed=22), "thresholds": torch.tensor([0.1, 0.3])},
               {"importances": Arg(), "totals": Arg(), "thresholds": Arg("any-real", sequence_ok=True)}),
        Target("spearman", P.spearman, lambda fx: {"x": rand(3, 5, seed=23), "y": rand(3, 5, seed=24)},
               {"x": Arg("any-real", inf_ok=True), "y": Arg("any-real", inf_ok=True)}, nan_out=True),
        Target("minimal_sufficient_part_sets", P.minimal_sufficient_part_sets, lambda fx: {"label": 3},
               {}, {"label": [-1, 10**6, 1.5, "3", None, True]}),
        Target("contrast_pair", P.contrast_pair, lambda fx: {"label": 5}, {}, {"label": [-2, 999, 2.0, "a"]}),
        Target("Consistency", lambda part_vecs, labels, prototype_classes, mu=0.8:
               M.Consistency(mu)(part_vecs, labels, prototype_classes),
               lambda fx: {"part_vecs": rand(4, 5, 3, seed=16) > 0.5, "labels": class_labels(4, 2),
                           "prototype_classes": torch.tensor([0, 1, -1, 0, 1])},
               {"part_vecs": Arg("bool")}, {"mu": [0, 2, float("nan")]}),
        Target("evaluate_parts", lambda model, dataset, explain, **kw: P.evaluate_parts(model, dataset, explain, **kw),
               lambda fx: {"model": P.PartOracle(), "dataset": fx.once("parts-world", _tiny_world),
                           "explain": lambda x, t: P.oracle_explanation(P.PartOracle(), x, t), "indices": [0]},
               {}, {"indices": [[-1], [99], [], [0.5], "0"], "thresholds": [[float("nan")], [], "x", [[0.1]]],
                    "dilation": [0, 2], "internal_batch_size": [0, -1], "dataset": [None, [1, 2]], "explain": [None, 3],
                    "model": [None, "model"]}),
    ]


def _tiny_world() -> Any:
    """A part world of two 32 px test images."""
    return create_dataset("parts", split="test", image_size=32, test_size=2, max_clutter=1)


AREA = tensor_area("metrics", _metric_targets(), test_examples=250)
