"""Model heads, one module per method family, behind ``create_model(name, **cfg)``; classifiers
from a model spec (``load_classifier``) or any module (``wrap_classifier``), :mod:`.specs`."""

from . import classifier, protosvit, side, vsc  # noqa: F401  (registers the models)
from .base import MODELS, PrototypeOutput, contribution_threshold, create_model, list_models, load_model
from .specs import Preprocess, WrappedClassifier, load_classifier, wrap_classifier

__all__ = ["MODELS", "Preprocess", "PrototypeOutput", "WrappedClassifier", "contribution_threshold", "create_model",
           "list_models", "load_classifier", "load_model", "wrap_classifier"]
