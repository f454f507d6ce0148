"""Training: one generic loop over cached features, staged runs with resume, method schedules."""

from .loop import predict, train_epochs
from .run import RunFolder

__all__ = ["RunFolder", "predict", "train_epochs"]
