"""Shared fixtures: a tiny in-memory image dataset for tests that need any dataset."""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its OpenMP setting for shared machines, as in the CLI)

# isort: split
import pytest
import torch

from sparsex.data.base import ImageDataset


class TinyImages(ImageDataset):
    """``n`` random RGB images of ``size x size``, labels ``i % classes``; deterministic from ``seed``."""

    name = "tiny"

    def __init__(self, n: int = 10, size: int = 32, classes: int = 3, seed: int = 0, split: str = "train") -> None:
        self.split = split
        self.classes = [f"c{i}" for i in range(classes)]
        self.image_size = (size, size)
        self.seed = seed
        self.images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": i % len(self.classes)}

    def fingerprint(self) -> dict:
        return {"name": self.name, "split": self.split, "n": len(self), "seed": self.seed, "size": self.image_size}


@pytest.fixture
def tiny_images() -> TinyImages:
    return TinyImages()


@pytest.fixture(scope="session")
def digits_classifier(tmp_path_factory):
    """A small CNN trained for one epoch on the 8x8 digits (test accuracy well above chance):
    ``(run folder, model)``. Shared by the mask-explainer and circuit tests."""
    from sparsex.models.classifier import load_classifier
    from sparsex.train.classifier import ClassifierTrainConfig, train_classifier

    out = tmp_path_factory.mktemp("digits-classifier") / "run"
    train_classifier(ClassifierTrainConfig(data="digits", backbone="small-cnn", image_size=8, epochs=1), out, progress=False)
    return out, load_classifier(out)[0]


@pytest.fixture(scope="session")
def parts_classifier(tmp_path_factory) -> str:
    """A small CNN trained for 2 epochs on a tiny part world (48 px, 96 train / 24 test images):
    its run folder. Shared by the evaluation tests of the library and the CLI."""
    from sparsex.train.classifier import ClassifierTrainConfig, train_classifier

    out = tmp_path_factory.mktemp("parts-classifier") / "run"
    train_classifier(ClassifierTrainConfig(data="parts", data_options={"image_size": 48, "train_size": 96, "test_size": 24},
                                           backbone="small-cnn", epochs=2), out, progress=False)
    return str(out)
