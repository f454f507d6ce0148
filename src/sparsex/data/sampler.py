"""Class-balanced batches (every class in every batch, with same-class pairs) and whole splits as tensors."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from ..checks import check_int
from ..errors import DataError
from ..progress import progress_bar
from .base import ImageDataset


def min_balanced_batch_size(num_classes: int, per_class: int = 2) -> int:
    """The smallest batch that holds ``per_class`` samples of each of ``num_classes`` classes."""
    return per_class * num_classes


class ClassBalancedBatchSampler(torch.utils.data.Sampler):
    """Yield batches of ``batch_size`` dataset indices in which every class present in ``labels``
    appears ``batch_size // K`` times (the ``batch_size mod K`` left-over places go to distinct,
    randomly chosen classes), so every batch holds same-class pairs.

    Each class's indices are drawn without replacement from a shuffled pool that is reshuffled when
    used up, so over an epoch every item is seen about equally often (a class with fewer items is
    revisited sooner). ``num_batches`` per epoch defaults to ``N // batch_size`` (at least 1).
    The order depends only on ``seed`` and the epoch (:meth:`set_epoch`), so runs are reproducible.

    ``batch_size`` must be at least ``per_class * K`` (``K`` the classes present) and every class
    needs ``per_class`` items; otherwise :class:`DataError` says what is needed. ``classes`` (names
    by label) only make the messages clearer.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray | torch.Tensor, batch_size: int,
                 num_batches: int | None = None, seed: int = 0, per_class: int = 2,
                 classes: Sequence[str] | None = None) -> None:
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if labels.ndim != 1 or len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"class-balanced batches need a non-empty 1-D array of integer labels, "
                            f"got {labels.dtype} {labels.shape}")
        self.present, counts = np.unique(labels, return_counts=True)
        k = len(self.present)
        need = min_balanced_batch_size(k, per_class)
        check_int(batch_size, "batch size", error=DataError)
        if batch_size < need:
            raise DataError(f"batch size {batch_size} is too small to hold same-class pairs of {k} classes: "
                            f"need at least {need} ({per_class} per class)")
        if counts.min() < per_class:
            label = int(self.present[counts.argmin()])
            name = f"{classes[label]!r} (label {label})" if classes is not None and label < len(classes) else f"label {label}"
            raise DataError(f"class {name} has {counts.min()} item(s); class-balanced batches need at least "
                            f"{per_class} per class")
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.num_batches = max(1, len(labels) // batch_size) if num_batches is None else num_batches
        self.pools = [np.flatnonzero(labels == c) for c in self.present]

    def set_epoch(self, epoch: int) -> None:
        """Batches of the next iteration come from ``(seed, epoch)``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        k = len(self.pools)
        order = [rng.permutation(pool) for pool in self.pools]
        position = [0] * k
        base, extra = divmod(self.batch_size, k)
        for _ in range(self.num_batches):
            counts = np.full(k, base)
            counts[rng.choice(k, size=extra, replace=False)] += 1
            batch: list[int] = []
            for c in range(k):
                for _ in range(counts[c]):
                    if position[c] == len(order[c]):
                        order[c], position[c] = rng.permutation(self.pools[c]), 0
                    batch.append(int(order[c][position[c]]))
                    position[c] += 1
            yield [batch[i] for i in rng.permutation(len(batch))]


def dataset_tensors(dataset: ImageDataset, progress: bool = False,
                    limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split in memory (its first ``limit`` items when given): images ``(N, C, H, W)``
    float32 and labels ``(N,)`` int64.

    Raises :class:`DataError` for an empty split or images of different sizes.
    """
    if len(dataset) == 0:
        raise DataError(f"dataset {dataset.name!r} split {dataset.split!r} is empty")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = [dataset[i] for i in progress_bar(range(n), desc=f"load {dataset.name}/{dataset.split}",
                                      disable=not progress, leave=False)]
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) > 1:
        raise DataError(f"dataset {dataset.name!r} has images of different sizes {sorted(shapes)[:2]}; "
                        f"set the dataset's image_size")
    images = torch.stack([item["image"] for item in items]).to(torch.float32)
    return images, torch.tensor([item["label"] for item in items], dtype=torch.int64)
