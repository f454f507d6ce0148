"""IDX reader and the fashion-mnist / mnist datasets, on IDX files written here with struct + gzip."""

from __future__ import annotations

import gzip
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import sparsex
from sparsex.data import idx as idx_module
from sparsex.data.idx import FASHION_MNIST_CLASSES, read_idx
from sparsex.errors import DataError

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray, dims: tuple[int, ...] | None = None, magic: bytes | None = None) -> bytes:
    """An IDX file's bytes for ``arr`` (header dims and magic can be overridden to make bad files)."""
    dims = arr.shape if dims is None else dims
    magic = bytes([0, 0, CODES[arr.dtype.type], len(dims)]) if magic is None else magic
    return magic + struct.pack(f">{len(dims)}I", *dims) + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool | None = None) -> Path:
    path.write_bytes(gzip.compress(data) if (path.suffix == ".gz" if gz is None else gz) else data)
    return path


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    prefix = "train" if split == "train" else "t10k"
    ext = ".gz" if gz else ""
    write(root / f"{prefix}-images-idx3-ubyte{ext}", idx_bytes(images.astype(np.uint8)))
    write(root / f"{prefix}-labels-idx1-ubyte{ext}", idx_bytes(labels.astype(np.uint8)))


@pytest.fixture
def fake_mnist(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 7), ("test", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_split(tmp_path, split, images, labels)
        arrays[split] = (images, labels)
    return tmp_path, arrays


# --- read_idx -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_dtype(tmp_path: Path, dtype: type, gz: bool) -> None:
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    arr = np.array([[info.min, 0, 1], [info.max, 7, -1 if info.min < 0 else 2]], dtype=dtype)
    out = read_idx(write(tmp_path / "a.idx", idx_bytes(arr), gz=gz))
    assert out.shape == (2, 3) and out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "x-ubyte", idx_bytes(arr), gz=True)), arr)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "y.gz", idx_bytes(arr), gz=False)), arr)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda a: b"", "is empty"),
        (lambda a: b"\x00\x00", "truncated header"),
        (lambda a: idx_bytes(a, magic=b"\x01\x00\x08\x02"), "wrong magic number 01000802"),
        (lambda a: idx_bytes(a, magic=b"\x00\x00\x07\x02"), "unknown dtype code 0x07"),
        (lambda a: idx_bytes(a, magic=b"\x00\x00\x08\x00")[:4], "0 dimensions"),
        (lambda a: idx_bytes(a)[:10], "truncated header"),
        (lambda a: idx_bytes(a)[:-1], "truncated: header dims 3x4 of uint8 need 12 payload bytes, the file holds 11"),
        (lambda a: idx_bytes(a) + b"\x00\x00", "extra bytes after the data: header dims 3x4 of uint8 need 12"),
        (lambda a: idx_bytes(a, dims=(3, 5)), "truncated"),
    ],
    ids=["empty", "short-magic", "magic", "dtype", "ndim0", "short-dims", "truncated", "extra", "dims-too-big"],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, gz: bool, make, needle: str) -> None:
    path = write(tmp_path / "bad.idx", make(np.arange(12, dtype=np.uint8).reshape(3, 4)), gz=gz)
    with pytest.raises(DataError, match="^IDX file .*bad.idx") as e:
        read_idx(path)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_huge_header_dims_fail_without_allocating(tmp_path: Path, gz: bool) -> None:
    arr = np.zeros((2, 2, 2), dtype=np.float64)
    path = write(tmp_path / "huge.idx", idx_bytes(arr, dims=(2**31, 2**31, 2**31)), gz=gz)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"truncated: header dims 2147483648x2147483648x2147483648 of float64"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_read_idx_corrupt_and_truncated_gzip(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    garbled = good[:12] + bytes(b ^ 0xFF for b in good[12:40]) + good[40:]
    for name, data in (("garbled.gz", garbled), ("cut.gz", good[: len(good) // 2]), ("header.gz", b"\x1f\x8b\x08")):
        with pytest.raises(DataError, match=f"IDX file .*{name}: corrupt or truncated gzip data"):
            read_idx(write(tmp_path / name, data, gz=False))


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="IDX file not found: .*nope"):
        read_idx(tmp_path / "nope")


# --- datasets -----------------------------------------------------------------------------


def test_fashion_mnist_items_round_trip(fake_mnist) -> None:
    root, arrays = fake_mnist
    for split, (images, labels) in arrays.items():
        ds = sparsex.create_dataset("fashion-mnist", split=split, root=root)
        assert (ds.name, ds.split, len(ds), ds.channels, ds.image_size) == ("fashion-mnist", split, len(labels), 1, (28, 28))
        assert ds.classes == FASHION_MNIST_CLASSES and ds.num_classes == 10 and ds.classes[0] == "T-shirt/top"
        np.testing.assert_array_equal(ds.labels(), labels)
        assert ds.labels().dtype == np.int64
        for i in range(len(ds)):
            item = ds[i]
            assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 28, 28)
            assert item["label"] == labels[i] and isinstance(item["label"], int)
            assert torch.equal(torch.round(item["image"] * 255).to(torch.uint8)[0], torch.from_numpy(images[i]))
        assert ds[0]["image"][0, 0, 0] == 0.0 and ds[0]["image"][0, 0, 1] == 1.0
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 1, 28, 28) and batch["label"].tolist() == arrays["test"][1].tolist()


def test_limit_takes_first_items(fake_mnist) -> None:
    root, arrays = fake_mnist
    ds = sparsex.create_dataset("fashion-mnist", root=root, limit=4)
    assert len(ds) == 4 and ds.fingerprint()["limit"] == 4
    np.testing.assert_array_equal(ds.labels(), arrays["train"][1][:4])
    assert len(sparsex.create_dataset("fashion-mnist", root=root, limit=1000)) == 7
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(DataError, match="setting 'limit' must be a positive integer"):
            sparsex.create_dataset("fashion-mnist", root=root, limit=bad)


def test_fingerprint_names_files_and_follows_their_content(fake_mnist) -> None:
    root, arrays = fake_mnist
    fp = sparsex.create_dataset("fashion-mnist", root=root).fingerprint()
    assert fp["name"] == "fashion-mnist" and fp["split"] == "train" and fp["limit"] is None
    assert fp["files"]["images"]["file"] == "train-images-idx3-ubyte.gz"
    assert len(fp["files"]["labels"]["sha256"]) == 64
    assert sparsex.create_dataset("fashion-mnist", root=root).fingerprint() == fp
    images, labels = arrays["train"]
    write_split(root, "train", images, (labels + 1) % 10)
    os.utime(root / "train-labels-idx1-ubyte.gz", ns=(1, 1))  # a new (size, mtime) key for the hash cache
    fp2 = sparsex.create_dataset("fashion-mnist", root=root).fingerprint()
    assert fp2["files"]["labels"]["sha256"] != fp["files"]["labels"]["sha256"]
    assert fp2["files"]["images"] == fp["files"]["images"]


def test_uncompressed_and_dotted_file_names(tmp_path: Path) -> None:
    images = np.full((2, 28, 28), 51, dtype=np.uint8)
    write_split(tmp_path, "test", images, np.array([3, 4]), gz=False)
    ds = sparsex.create_dataset("fashion-mnist", split="test", root=tmp_path)
    assert ds.labels().tolist() == [3, 4] and torch.allclose(ds[1]["image"], torch.full((1, 28, 28), 0.2))
    (tmp_path / "t10k-images-idx3-ubyte").rename(tmp_path / "t10k-images.idx3-ubyte")
    assert len(sparsex.create_dataset("fashion-mnist", split="test", root=tmp_path)) == 2


def test_count_mismatch_and_bad_labels(tmp_path: Path) -> None:
    write_split(tmp_path, "train", np.zeros((5, 28, 28)), np.zeros(4))
    with pytest.raises(DataError, match="5 images in train-images-idx3-ubyte.gz but 4 labels in train-labels"):
        sparsex.create_dataset("fashion-mnist", root=tmp_path)
    write_split(tmp_path, "train", np.zeros((2, 28, 28)), np.array([1, 10]))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 9\], found 1..10"):
        sparsex.create_dataset("fashion-mnist", root=tmp_path)
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((2, 784), dtype=np.uint8)))
    with pytest.raises(DataError, match=r"expected uint8 images \(N, H, W\)"):
        sparsex.create_dataset("fashion-mnist", root=tmp_path)


def test_missing_fashion_mnist_files_give_the_install_hint(tmp_path: Path, monkeypatch) -> None:
    write_split(tmp_path, "train", np.zeros((1, 28, 28)), np.zeros(1))
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as e:
        sparsex.create_dataset("fashion-mnist", root=tmp_path)
    msg = str(e.value)
    assert "train-labels-idx1-ubyte.gz not found in" in msg and "train-images" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--root DIR" in msg and "\n" not in msg
    monkeypatch.setattr(idx_module, "FASHION_MNIST_ROOT", tmp_path / "absent")
    both = "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz not found in .*absent; run `apt-get install"
    with pytest.raises(DataError, match=both):
        sparsex.create_dataset("fashion-mnist", split="test")


def test_bad_split_and_unknown_setting(fake_mnist) -> None:
    root, _ = fake_mnist
    with pytest.raises(DataError, match="dataset 'fashion-mnist' has no split 'val'; valid splits: train, test"):
        sparsex.create_dataset("fashion-mnist", split="val", root=root)
    with pytest.raises(DataError, match="dataset 'mnist' has no setting 'image_size'; valid settings: limit"):
        sparsex.create_dataset("mnist", root=root, image_size=32)


def test_mnist_reads_the_same_files_with_digit_classes(fake_mnist, monkeypatch) -> None:
    root, arrays = fake_mnist
    ds = sparsex.create_dataset("mnist", split="test", root=root)
    assert ds.classes == [str(i) for i in range(10)] and ds.name == "mnist"
    np.testing.assert_array_equal(ds.labels(), arrays["test"][1])
    monkeypatch.setattr(idx_module, "MNIST_ROOT", root / "absent")
    with pytest.raises(DataError, match="dataset 'mnist' has no default folder .*pass --root DIR"):
        sparsex.create_dataset("mnist")
    monkeypatch.setattr(idx_module, "MNIST_ROOT", root)
    assert len(sparsex.create_dataset("mnist")) == 7


@pytest.mark.skipif(
    not idx_module.FASHION_MNIST_ROOT.is_dir(),
    reason="real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist() -> None:
    for split, n in (("train", 60000), ("test", 10000)):
        ds = sparsex.create_dataset("fashion-mnist", split=split)
        assert len(ds) == n and ds.num_classes == 10
        labels = ds.labels()
        assert labels.min() == 0 and labels.max() == 9 and np.bincount(labels).tolist() == [n // 10] * 10
        item = ds[0]
        assert item["image"].shape == (1, 28, 28) and 0.0 <= item["image"].min() < item["image"].max() <= 1.0
        assert item["label"] == 9  # both splits start with an ankle boot
