"""Training: one registry of methods (``train_model(method, out, **settings)``,
``list_trainers()``), one generic loop over cached features, staged runs with resume."""

from . import classifier, dictionary, infodisent, minimal_mask, protosvit, side, vsc  # noqa: F401  (registers the trainers)
from .base import TRAINERS, TrainConfig, list_trainers, register_trainer, train_model
from .loop import predict, train_epochs
from .run import RunFolder, run_stages

__all__ = ["TRAINERS", "RunFolder", "TrainConfig", "list_trainers", "predict", "register_trainer", "run_stages",
           "train_epochs", "train_model"]
