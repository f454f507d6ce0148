"""Metrics, batched in torch: settings at construction, data at call, each with its direction."""

from .prototype import (
    Accuracy,
    GlobalSize,
    LocalSize,
    LocalSizeAllClasses,
    Metric,
    OCLAScore,
    ZeroWeightFraction,
    accuracy,
    classes_above_histogram,
    global_size,
    local_size,
    local_size_all_classes,
    ocla_score,
    prototype_metrics,
    zero_weight_fraction,
)

__all__ = [
    "Accuracy",
    "GlobalSize",
    "LocalSize",
    "LocalSizeAllClasses",
    "Metric",
    "OCLAScore",
    "ZeroWeightFraction",
    "accuracy",
    "classes_above_histogram",
    "global_size",
    "local_size",
    "local_size_all_classes",
    "ocla_score",
    "prototype_metrics",
    "zero_weight_fraction",
]
