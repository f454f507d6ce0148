"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no files to fetch)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .base import DATASETS, ImageDataset, check_split, reject_unknown_options

#: Fraction of each class that goes to the test split, and the seed of the stratified split.
TEST_FRACTION = 0.2
SPLIT_SEED = 0


class DigitsDataset(ImageDataset):
    """One split of the 8x8 digits: items ``image`` ``(1, 8, 8)`` float32 in ``[0, 1]`` (pixel
    values / 16) and ``label`` int in ``[0, 9]``.

    The split is stratified by class, 80 % train / 20 % test, with a fixed seed; ``indices``
    ``(N,)`` are the items' positions in ``sklearn.datasets.load_digits()``.
    """

    name = "digits"
    channels = 1
    image_size = (8, 8)

    def __init__(self, split: str = "train") -> None:
        self.split = check_split(split, ("train", "test"), self.name)
        self.classes = [str(i) for i in range(10)]
        from sklearn.datasets import load_digits  # imported here: scikit-learn takes ~1 s to import
        from sklearn.model_selection import train_test_split

        data = load_digits()
        idx = np.arange(len(data.target))
        train_idx, test_idx = train_test_split(
            idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=data.target
        )
        keep = np.sort(train_idx if split == "train" else test_idx)
        self.indices = keep
        self.images = torch.from_numpy((data.images[keep] / 16.0).astype(np.float32)).unsqueeze(1)
        self._labels = data.target[keep].astype(np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "label": int(self._labels[i])}

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self._labels.tobytes())
        return {
            "name": self.name,
            "split": self.split,
            "test_fraction": TEST_FRACTION,
            "seed": SPLIT_SEED,
            "sha256": h.hexdigest(),
        }


@DATASETS.register("digits", description="scikit-learn's bundled 8x8 digits, grey-scale, 10 classes (no files)")
def create_digits(split: str = "train", root: str | os.PathLike | None = None, **unknown: Any) -> DigitsDataset:
    """The 8x8 digits shipped with scikit-learn; splits ``train`` (1437) and ``test`` (360).

    Takes no ``root`` (the data come with scikit-learn) and no settings.
    """
    reject_unknown_options("digits", unknown, [])
    if root is not None:
        raise DataError("dataset 'digits' ships with scikit-learn and takes no root folder")
    return DigitsDataset(split)
