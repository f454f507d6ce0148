"""Explainers with captum's shape: ``Explainer(model, ...).attribute(inputs, target=None)``."""

from .prototypes import (
    ClassPrediction,
    Gallery,
    PrototypeContribution,
    PrototypeExplainer,
    PrototypeExplanation,
    build_gallery,
    explain_checkpoint,
    load_gallery,
    save_gallery,
)

__all__ = [
    "ClassPrediction", "Gallery", "PrototypeContribution", "PrototypeExplainer", "PrototypeExplanation",
    "build_gallery", "explain_checkpoint", "load_gallery", "save_gallery",
]
