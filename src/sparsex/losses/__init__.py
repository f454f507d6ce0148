"""Losses: plain functions, one per published loss, with the formula in the docstring."""

from .asl import asymmetric_loss, binary_cross_entropy_loss
from .hoyer import class_importance_hoyer_loss, hoyer_square, hoyer_square_loss
from .ocla import ocla_loss
from .tanh import tanh_loss

__all__ = ["asymmetric_loss", "binary_cross_entropy_loss", "class_importance_hoyer_loss", "hoyer_square", "hoyer_square_loss", "ocla_loss", "tanh_loss"]
