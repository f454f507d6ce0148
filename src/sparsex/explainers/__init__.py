"""Explainers with captum's shape: ``Explainer(model, ...).attribute(inputs, target=None)``."""

from .attributions import GradCAMExplainer, IntegratedGradientsExplainer, OcclusionExplainer, SaliencyExplainer  # registers them
from .base import EXPLAINERS, Explainer, create_explainer, list_explainers
from .circuit import circuit_from_json, circuit_to_json, default_circuit_layers, kernel_mass, readout
from .circuit_file import circuit_file
from .minimal_mask import MaskObjectiveWeights, MinimalMask, MinimalMaskConfig, PerImageMask  # registers per-image-mask
from .prototypes import (  # registers "prototypes"
    ClassPrediction,
    PrototypeContribution,
    PrototypeEvidence,
    PrototypeExplainer,
    PrototypeExplanation,
    explain_checkpoint,
)

__all__ = [
    "EXPLAINERS", "Explainer", "create_explainer", "list_explainers",
    "GradCAMExplainer", "IntegratedGradientsExplainer", "OcclusionExplainer", "SaliencyExplainer",
    "MaskObjectiveWeights", "MinimalMask", "MinimalMaskConfig", "PerImageMask",
    "ClassPrediction", "PrototypeContribution", "PrototypeEvidence", "PrototypeExplainer", "PrototypeExplanation",
    "explain_checkpoint",
    "circuit_file", "circuit_from_json", "circuit_to_json", "default_circuit_layers", "kernel_mass", "readout",
]
