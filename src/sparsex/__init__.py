"""sparsex: sparse, faithful explanations of image classifiers.

Top-level factories in timm's style: ``create_dataset`` / ``list_datasets``, ``create_backbone`` /
``list_backbones``, ``create_model`` / ``list_models``, ``create_explainer`` / ``list_explainers``,
``train_model`` / ``list_trainers`` (all but the first two are imported on first use, so
``import sparsex`` stays light).
"""

from . import runtime

runtime.tune()  # before torch is imported: OpenMP spin and malloc settings for CPUs (sparsex.runtime)

from typing import Any  # noqa: E402

from . import partworld  # noqa: E402, F401  (registers the dataset "parts")
from .data import create_dataset, list_datasets  # noqa: E402
from .errors import SparsexError  # noqa: E402

__version__ = "0.1.0"

_LAZY = {"create_backbone": "backbones", "list_backbones": "backbones", "create_model": "models",
         "list_models": "models", "load_classifier": "models", "wrap_classifier": "models",
         "create_explainer": "explainers", "list_explainers": "explainers",
         "train_model": "train", "list_trainers": "train"}

__all__ = ["SparsexError", "create_dataset", "list_datasets", *_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sparsex' has no attribute {name!r}")
