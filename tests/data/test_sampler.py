import numpy as np
import pytest
import torch
from conftest import TinyImages

from sparsex import create_dataset
from sparsex.data.sampler import ClassBalancedBatchSampler, dataset_tensors, min_balanced_batch_size
from sparsex.errors import DataError


def test_every_batch_holds_every_class_equally():
    labels = np.repeat(np.arange(4), 6)  # 4 classes x 6 items
    sampler = ClassBalancedBatchSampler(labels, batch_size=8)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    for batch in batches:
        assert np.bincount(labels[batch], minlength=4).tolist() == [2, 2, 2, 2]
    assert sorted(i for b in batches for i in b) == list(range(24))  # each item once per epoch here


def test_left_over_places_go_to_distinct_classes_and_uneven_classes_cycle():
    labels = np.array([0] * 30 + [1] * 3 + [2] * 10)
    for batch in ClassBalancedBatchSampler(labels, batch_size=11, num_batches=5, seed=3):
        counts = np.bincount(labels[batch], minlength=3)
        assert len(batch) == 11 and sorted(counts.tolist()) == [3, 4, 4]  # 11 = 3 x 3 + 2 left over


def test_reproducible_per_seed_and_epoch():
    labels = np.repeat(np.arange(3), 20)
    a, b = ClassBalancedBatchSampler(labels, 6, seed=1), ClassBalancedBatchSampler(labels, 6, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_batch_too_small_says_the_minimum():
    assert min_balanced_batch_size(10) == 20
    with pytest.raises(DataError, match=r"batch size 8 is too small to hold same-class pairs of 10 classes: need at least 20"):
        ClassBalancedBatchSampler(np.repeat(np.arange(10), 5), batch_size=8)
    with pytest.raises(DataError, match=r"class 'b' \(label 1\) has 1 item"):
        ClassBalancedBatchSampler(np.array([0, 0, 1, 2, 2]), batch_size=6, classes=["a", "b", "c"])
    with pytest.raises(DataError, match="integer labels"):
        ClassBalancedBatchSampler(np.array([0.5, 1.5]), batch_size=6)


def test_dataset_tensors():
    images, labels = dataset_tensors(create_dataset("digits", split="test"))
    assert images.shape == (360, 1, 8, 8) and images.dtype == torch.float32 and labels.shape == (360,)
    tiny = TinyImages(n=4, size=6)
    assert dataset_tensors(tiny)[0].shape == (4, 3, 6, 6)
    first, first_labels = dataset_tensors(tiny, limit=3)
    assert torch.equal(first, tiny.images[:3]) and first_labels.tolist() == [0, 1, 2]

    class Mixed(TinyImages):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            return {**item, "image": item["image"][:, : 4 + i % 2]}

    with pytest.raises(DataError, match="different sizes"):
        dataset_tensors(Mixed(n=4))
