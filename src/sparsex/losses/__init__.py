"""Losses: plain functions, one per published loss, with the formula in the docstring."""

from .asl import asymmetric_loss, binary_cross_entropy_loss
from .ocla import ocla_loss

__all__ = ["asymmetric_loss", "binary_cross_entropy_loss", "ocla_loss"]
