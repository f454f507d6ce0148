"""sparsex: sparse, faithful explanations of image classifiers."""

from .data import create_dataset, list_datasets
from .errors import SparsexError

__version__ = "0.1.0"

__all__ = ["SparsexError", "create_dataset", "list_datasets", "__version__"]
