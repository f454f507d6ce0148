"""Datasets behind one registry: ``create_dataset(name, split=..., root=...)``, ``list_datasets()``."""

from . import cub, digits, idx, imagefolder  # noqa: F401  (registers the datasets)
from .base import DATASETS, ImageDataset, create_dataset, list_datasets

__all__ = ["DATASETS", "ImageDataset", "create_dataset", "list_datasets"]
