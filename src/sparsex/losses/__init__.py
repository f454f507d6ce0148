"""Losses: plain functions, one per published loss, with the formula in the docstring."""

from .asl import asymmetric_loss, binary_cross_entropy_loss
from .hoyer import class_importance_hoyer_loss, hoyer_square, hoyer_square_loss
from .ocla import ocla_loss
from .tanh import tanh_loss
from .vsc import bernoulli_jsd, class_alignment_loss, mean_pairwise_jsd, pairwise_bernoulli_jsd, spike_slab_kl

__all__ = [
    "asymmetric_loss",
    "bernoulli_jsd",
    "binary_cross_entropy_loss",
    "class_alignment_loss",
    "class_importance_hoyer_loss",
    "hoyer_square",
    "hoyer_square_loss",
    "mean_pairwise_jsd",
    "ocla_loss",
    "pairwise_bernoulli_jsd",
    "spike_slab_kl",
    "tanh_loss",
]
