"""Backbones: ``create_backbone(name, ...)`` for registered names and any timm architecture."""

from . import lite0, small_cnn  # noqa: F401  (registers the backbones)
from .backbone import BACKBONES, Backbone, BackboneInfo, create_backbone, input_channels, list_backbones

__all__ = ["BACKBONES", "Backbone", "BackboneInfo", "create_backbone", "input_channels", "list_backbones"]
