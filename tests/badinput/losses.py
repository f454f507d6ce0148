"""Area "losses": every loss on broken inputs and with nonsense settings."""

from __future__ import annotations

import torch

from sparsex import losses as Ls
from sparsex.losses import mask as Mk

from .tensors import Arg, Target, class_labels, rand, tensor_area


def _loss_targets() -> list[Target]:
    """Every loss: prototype, sparse-coding and mask losses."""
    nonneg = [float("nan"), -1.0, float("inf"), "x", None]
    return [
        Target("asymmetric_loss", Ls.asymmetric_loss, lambda fx: {"logits": rand(4, 3, seed=30, low=-3, high=3),
                                                                            "targets": class_labels(4, 3)},
               {"logits": Arg(), "targets": Arg("int")},
               {"gamma_pos": nonneg, "gamma_neg": nonneg, "margin": [-0.1, 1.0, float("nan"), "x"], "eps": [0, 1, -1e-3, "x"]}),
        Target("asymmetric_loss(matrix)", Ls.asymmetric_loss,
               lambda fx: {"logits": rand(4, 3, seed=30, low=-3, high=3), "targets": torch.eye(3)[class_labels(4, 3)]},
               {"logits": Arg(), "targets": Arg("mask")}),
        Target("binary_cross_entropy_loss", Ls.binary_cross_entropy_loss,
               lambda fx: {"logits": rand(4, 3, seed=31, low=-3, high=3), "targets": class_labels(4, 3)},
               {"logits": Arg(), "targets": Arg("int")}),
        Target("ocla_loss", Ls.ocla_loss, lambda fx: {"logits": rand(4, 3, seed=32, low=-3, high=3), "targets": class_labels(4, 3)},
               {"logits": Arg(), "targets": Arg("int")},
               {"threshold": [0, 1, float("nan"), "x"], "weight": nonneg, "margin": [-0.1, 0.6, float("nan"), "x"]}),
        Target("tanh_loss", Ls.tanh_loss, lambda fx: {"scores": rand(4, 5, seed=33)}, {"scores": Arg()},
               {"eps": [0, -1.0, float("nan"), "x"]}),
        Target("hoyer_square", Ls.hoyer_square, lambda fx: {"x": rand(4, 5, seed=34)}, {"x": Arg()},
               {"eps": [-1.0, float("nan"), "x", None]}),
        Target("hoyer_square_loss", Ls.hoyer_square_loss, lambda fx: {"importances": rand(4, 5, seed=34)},
               {"importances": Arg()}),
        Target("class_importance_hoyer_loss", Ls.class_importance_hoyer_loss,
               lambda fx: {"scores": rand(4, 5, seed=35), "class_weights": rand(3, 5, seed=36), "targets": class_labels(4, 3)},
               {"scores": Arg(), "class_weights": Arg(), "targets": Arg("int")}),
        Target("spike_slab_kl", Ls.spike_slab_kl,
               lambda fx: {"mu": rand(4, 3, seed=37, low=-1), "logvar": rand(4, 3, seed=38, low=-1), "gamma": rand(4, 3, seed=39),
                           "alpha": 0.2},
               {"mu": Arg(), "logvar": Arg(), "gamma": Arg()}, {"alpha": [0, 1, float("nan"), -0.5, "x", None]}),
        Target("bernoulli_jsd", Ls.bernoulli_jsd, lambda fx: {"p": rand(4, 3, seed=40), "q": rand(4, 3, seed=41)},
               {"p": Arg(), "q": Arg()}),
        Target("pairwise_bernoulli_jsd", Ls.pairwise_bernoulli_jsd,
               lambda fx: {"p": rand(4, 3, seed=40), "q": rand(2, 3, seed=41)}, {"p": Arg(), "q": Arg(optional=True)}),
        Target("mean_pairwise_jsd", Ls.mean_pairwise_jsd, lambda fx: {"gamma": rand(4, 3, seed=42)}, {"gamma": Arg()}),
        Target("class_alignment_loss", Ls.class_alignment_loss,
               lambda fx: {"gamma": rand(6, 3, seed=43), "labels": class_labels(6, 2)}, {"gamma": Arg(), "labels": Arg("int")}),
        Target("activation_matching_loss", Mk.activation_matching_loss,
               lambda fx: {"reference": rand(2, 4, 3, 3, seed=44), "explained": rand(2, 4, 3, 3, seed=45)},
               {"reference": Arg(flex_ndim=True), "explained": Arg(flex_ndim=True)},
               {"kl_weight": [float("nan"), -1.0, "x"], "cosine_weight": [float("inf"), None]}),
        Target("mask_area_loss", Mk.mask_area_loss, lambda fx: {"mask": rand(2, 1, 4, 4, seed=46)}, {"mask": Arg()},
               {"target": [float("nan"), -0.5, 1.5, "x", None]}),
        Target("total_variation_loss", Mk.total_variation_loss, lambda fx: {"mask": rand(2, 1, 4, 4, seed=47)},
               {"mask": Arg()}),
        Target("binarisation_loss", Mk.binarisation_loss, lambda fx: {"mask": rand(2, 1, 4, 4, seed=48)},
               {"mask": Arg()}),
    ]


AREA = tensor_area("losses", _loss_targets(), test_examples=250)
