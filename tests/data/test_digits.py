"""scikit-learn's 8x8 digits behind the dataset registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import sparsex
from sparsex.errors import DataError


@pytest.fixture(scope="module")
def splits():
    return {s: sparsex.create_dataset("digits", split=s) for s in ("train", "test")}


def test_split_sizes_partition_and_stratification(splits) -> None:
    train, test = splits["train"], splits["test"]
    assert (len(train), len(test)) == (1437, 360)
    assert set(train.indices).isdisjoint(test.indices)
    assert sorted(np.concatenate([train.indices, test.indices]).tolist()) == list(range(1797))
    counts = np.bincount(load_digits().target, minlength=10)
    # stratified: every class puts 20 % (rounded) of its images into the test split
    assert np.all(np.abs(np.bincount(test.labels(), minlength=10) - 0.2 * counts) <= 1)


def test_items_are_the_bundled_pixels_over_16(splits) -> None:
    data = load_digits()
    for ds in splits.values():
        assert (ds.name, ds.channels, ds.image_size, ds.classes) == ("digits", 1, (8, 8), [str(i) for i in range(10)])
        for i in (0, 1, len(ds) - 1):
            item = ds[i]
            j = ds.indices[i]
            assert item["image"].shape == (1, 8, 8) and item["image"].dtype == torch.float32
            assert torch.equal(item["image"][0], torch.from_numpy((data.images[j] / 16).astype(np.float32)))
            assert item["label"] == data.target[j] == ds.labels()[i]
    assert float(splits["train"].images.min()) == 0.0 and float(splits["train"].images.max()) == 1.0


def test_split_is_deterministic_and_fingerprinted(splits) -> None:
    again = sparsex.create_dataset("digits", split="train")
    np.testing.assert_array_equal(again.indices, splits["train"].indices)
    fp = again.fingerprint()
    assert fp == splits["train"].fingerprint() and fp["split"] == "train" and len(fp["sha256"]) == 64
    assert splits["test"].fingerprint()["sha256"] != fp["sha256"]


def test_batches_through_a_dataloader(splits) -> None:
    batch = next(iter(torch.utils.data.DataLoader(splits["test"], batch_size=16)))
    assert batch["image"].shape == (16, 1, 8, 8) and batch["label"].dtype == torch.int64


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="dataset 'digits' has no split 'valid'; valid splits: train, test"):
        sparsex.create_dataset("digits", split="valid")
    with pytest.raises(DataError, match=r"dataset 'digits' has no setting 'limit'; valid settings: \(none\)"):
        sparsex.create_dataset("digits", limit=3)
    with pytest.raises(DataError, match="ships with scikit-learn and takes no root"):
        sparsex.create_dataset("digits", root="/tmp")
