"""Model heads, one module per method family, behind ``create_model(name, **cfg)``."""

from . import classifier, protosvit, side, vsc  # noqa: F401  (registers the models)
from .base import MODELS, PrototypeOutput, contribution_threshold, create_model, list_models, load_model

__all__ = ["MODELS", "PrototypeOutput", "contribution_threshold", "create_model", "list_models", "load_model"]
