"""Class-per-folder image trees, written here with PIL (RGB, grey-scale, RGBA and a corrupt file)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sparsex
from sparsex.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)  # H=6, W=9
GREY = RNG.integers(0, 256, size=(10, 5), dtype=np.uint8)
RGBA = RNG.integers(0, 256, size=(7, 7, 4), dtype=np.uint8)


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``train/{cat,dog}`` with three images (RGB, L, RGBA) plus files to ignore; ``test/{cat,dog}``."""
    save(tmp_path / "train" / "cat" / "a.png", RGB)
    save(tmp_path / "train" / "cat" / "sub" / "b.PNG", GREY)
    save(tmp_path / "train" / "dog" / "c.png", RGBA)
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    save(tmp_path / "train" / "dog" / ".hidden.png", RGB)
    save(tmp_path / "train" / ".cache" / "x.png", RGB)
    save(tmp_path / "test" / "cat" / "d.png", RGB[::-1])
    save(tmp_path / "test" / "dog" / "e.png", GREY.T)
    return tmp_path


def test_reads_split_folder_with_sorted_classes_and_exact_pixels(tree: Path) -> None:
    ds = sparsex.create_dataset("imagefolder", split="train", root=tree)
    assert (ds.classes, len(ds), ds.channels, ds.image_size) == (["cat", "dog"], 3, 3, None)
    assert ds.folder == tree / "train" and ds.labels().tolist() == [0, 0, 1]
    a, b, c = (ds[i] for i in range(3))
    assert a["path"].endswith("a.png") and b["path"].endswith("b.PNG") and c["label"] == 1
    assert torch.equal(a["image"], torch.from_numpy(RGB).permute(2, 0, 1).float() / 255)
    assert b["image"].shape == (3, 10, 5)  # grey-scale expanded to 3 equal channels
    assert all(torch.equal(b["image"][k], torch.from_numpy(GREY).float() / 255) for k in range(3))
    assert torch.equal(c["image"], torch.from_numpy(RGBA[..., :3]).permute(2, 0, 1).float() / 255)  # alpha dropped
    assert all(x["image"].dtype == torch.float32 for x in (a, b, c))
    test = sparsex.create_dataset("imagefolder", split="test", root=tree)
    assert len(test) == 2 and torch.equal(test[0]["image"], a["image"].flip(1))


def test_grey_scale_output(tree: Path) -> None:
    ds = sparsex.create_dataset("imagefolder", root=tree, channels=1)
    assert ds.channels == 1
    assert torch.equal(ds[1]["image"], torch.from_numpy(GREY).float()[None] / 255)
    expected = np.array(Image.fromarray(RGB).convert("L"), dtype=np.float32) / 255
    assert torch.equal(ds[0]["image"], torch.from_numpy(expected)[None])


def test_image_size_resizes_and_centre_crops(tree: Path) -> None:
    ds = sparsex.create_dataset("imagefolder", root=tree, image_size=4)
    assert ds.image_size == (4, 4)
    assert [ds[i]["image"].shape for i in range(3)] == [(3, 4, 4)] * 3
    # 9x6 -> shorter side 4 -> 6x4 (bilinear) -> columns 1..4
    expected = np.array(Image.fromarray(RGB).resize((6, 4), Image.BILINEAR), dtype=np.float32)[:, 1:5] / 255
    assert torch.equal(ds[0]["image"], torch.from_numpy(expected).permute(2, 0, 1))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 4, 4) and batch["label"].tolist() == [0, 0, 1]


def test_unsplit_tree_serves_any_split(tmp_path: Path) -> None:
    save(tmp_path / "b_class" / "x.png", GREY)
    save(tmp_path / "a_class" / "y.png", RGB)
    with pytest.warns(UserWarning, match="not split into train/test folders: split 'test' reads the same images"):
        ds = sparsex.create_dataset("imagefolder", split="test", root=tmp_path)
    assert ds.classes == ["a_class", "b_class"] and ds.labels().tolist() == [0, 1] and ds.split == "test"


def test_missing_split_lists_the_split_folders(tree: Path) -> None:
    with pytest.raises(DataError, match=r"has no split folder 'val'; found: train, test$"):
        sparsex.create_dataset("imagefolder", split="val", root=tree)


def test_corrupt_image_is_named_at_load_and_by_verify(tree: Path) -> None:
    ds = sparsex.create_dataset("imagefolder", root=tree)
    ds.verify()
    (tree / "train" / "dog" / "z.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    png = (tree / "train" / "cat" / "a.png").read_bytes()
    (tree / "train" / "cat" / "a.png").write_bytes(png[: len(png) // 2])
    ds = sparsex.create_dataset("imagefolder", root=tree)
    assert len(ds) == 4
    with pytest.raises(DataError, match=r"cannot read image .*train/cat/a\.png: not an image or corrupt"):
        ds.verify()  # the first bad file in order
    with pytest.raises(DataError, match=r"cannot read image .*train/cat/a\.png"):
        ds[0]
    with pytest.raises(DataError, match=r"cannot read image .*train/dog/z\.jpg"):
        ds[3]
    (tree / "train" / "cat" / "a.png").write_bytes(png)
    with pytest.raises(DataError, match=r"cannot read image .*train/dog/z\.jpg"):
        ds.verify()


def test_empty_trees_and_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no class folders"):
        sparsex.create_dataset("imagefolder", root=tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"class folder .*cat holds no images \(png, jpg"):
        sparsex.create_dataset("imagefolder", root=tmp_path)
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        sparsex.create_dataset("imagefolder", root=tmp_path / "absent")
    with pytest.raises(DataError, match="needs a folder: pass --root DIR"):
        sparsex.create_dataset("imagefolder")


def test_bad_settings(tree: Path) -> None:
    with pytest.raises(DataError, match="has no setting 'size'; valid settings: channels, image_size"):
        sparsex.create_dataset("imagefolder", root=tree, size=3)
    with pytest.raises(DataError, match="'channels' must be 1 or 3, got 4"):
        sparsex.create_dataset("imagefolder", root=tree, channels=4)
    with pytest.raises(DataError, match="'image_size' must be a positive integer or None, got 0"):
        sparsex.create_dataset("imagefolder", root=tree, image_size=0)


def test_fingerprint_follows_settings_and_files(tree: Path) -> None:
    fp = sparsex.create_dataset("imagefolder", root=tree).fingerprint()
    assert fp["classes"] == ["cat", "dog"] and fp["image_size"] is None and len(fp["files_sha256"]) == 64
    assert sparsex.create_dataset("imagefolder", root=tree).fingerprint() == fp
    assert sparsex.create_dataset("imagefolder", root=tree, image_size=4).fingerprint() != fp
    assert sparsex.create_dataset("imagefolder", root=tree, split="test").fingerprint()["files_sha256"] != fp["files_sha256"]
    os.utime(tree / "train" / "dog" / "c.png", ns=(1, 1))
    assert sparsex.create_dataset("imagefolder", root=tree).fingerprint()["files_sha256"] != fp["files_sha256"]
