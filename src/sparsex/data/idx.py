"""IDX files (the MNIST format) and the ``fashion-mnist`` and ``mnist`` datasets.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian. Files may be
gzip-compressed (recognised by content, not by name). :func:`read_idx` checks every part of that
and raises :class:`~sparsex.errors.DataError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..checks import check_int
from ..errors import DataError
from ..io import sha256_file
from .base import DATASETS, ImageDataset, check_split, reject_unknown_options

#: IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
MNIST_ROOT = Path("/usr/share/datasets/mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(i) for i in range(10)]
_FILE_PREFIX = {"train": "train", "test": "t10k"}
_CHUNK = 1 << 22
_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into an array of the header's shape, native byte order.

    Raises :class:`DataError` for an empty file, a corrupt gzip stream, a wrong magic number, an
    unknown dtype code, or a payload whose size differs from what the header dimensions say. The
    payload is read in chunks, so a header claiming more than the file holds allocates nothing big.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            if raw.read(2) == b"\x1f\x8b":
                raw.seek(0)
                try:
                    with gzip.GzipFile(fileobj=raw) as f:
                        return _read_idx_stream(f, path, None)
                except (gzip.BadGzipFile, zlib.error, EOFError) as e:
                    raise DataError(f"IDX file {path}: corrupt or truncated gzip data ({e})") from None
            raw.seek(0)
            return _read_idx_stream(raw, path, os.fstat(raw.fileno()).st_size)
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"IDX path {path} is a folder, not a file") from None
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror or e}") from None


def _read_idx_stream(f: BinaryIO, path: Path, file_size: int | None) -> np.ndarray:
    """Parse an IDX stream; ``file_size`` is the byte count when known (raw files), else ``None``."""
    magic = f.read(4)
    if not magic:
        raise DataError(f"IDX file {path} is empty")
    if len(magic) < 4:
        raise DataError(f"IDX file {path}: truncated header ({len(magic)} of 4 magic bytes)")
    if magic[:2] != b"\x00\x00":
        raise DataError(f"IDX file {path}: wrong magic number {magic.hex()} (must start with two zero bytes)")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        raise DataError(
            f"IDX file {path}: unknown dtype code 0x{code:02x} "
            f"(valid: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})"
        )
    if ndim == 0:
        raise DataError(f"IDX file {path}: header says 0 dimensions")
    head = f.read(4 * ndim)
    if len(head) < 4 * ndim:
        raise DataError(f"IDX file {path}: truncated header ({len(head)} of {4 * ndim} dimension bytes)")
    dims = struct.unpack(f">{ndim}I", head)
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    header_size = 4 + 4 * ndim
    if file_size is not None and file_size - header_size != expected:
        _size_error(path, dims, dtype, expected, file_size - header_size)
    payload = bytearray()
    while len(payload) < expected:
        chunk = f.read(min(_CHUNK, expected - len(payload)))
        if not chunk:
            _size_error(path, dims, dtype, expected, len(payload))
        payload += chunk
    extra = 0
    while chunk := f.read(_CHUNK):  # count (without keeping) any bytes past the payload
        extra += len(chunk)
    if extra:
        _size_error(path, dims, dtype, expected, expected + extra)
    return np.frombuffer(payload, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _size_error(path: Path, dims: tuple[int, ...], dtype: np.dtype, expected: int, got: int) -> None:
    problem = "truncated" if got < expected else "extra bytes after the data"
    raise DataError(
        f"IDX file {path}: {problem}: header dims {'x'.join(map(str, dims))} of {dtype.name} "
        f"need {expected} payload bytes, the file holds {got}"
    )


def cached_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, computed once per process for each (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_CACHE:
        _SHA256_CACHE[key] = sha256_file(path)
    return _SHA256_CACHE[key]


class IDXDataset(ImageDataset):
    """A split of an MNIST-style set held in memory: items ``image`` ``(1, H, W)`` float32 in
    ``[0, 1]`` and ``label`` int.

    ``images`` is a uint8 array ``(N, H, W)``, ``labels`` an int array ``(N,)`` in
    ``[0, len(classes))``; ``files`` maps ``"images"``/``"labels"`` to the source files.
    """

    channels = 1

    def __init__(
        self,
        name: str,
        split: str,
        images: np.ndarray,
        labels: np.ndarray,
        classes: list[str],
        files: dict[str, Path],
        limit: int | None = None,
    ) -> None:
        self.name, self.split, self.classes = name, split, list(classes)
        self.files, self.limit = files, limit
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"IDX file {files['images']}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"IDX file {files['labels']}: expected integer labels (N,), got {labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise DataError(
                f"dataset {name!r} split {split!r}: {len(images)} images in {files['images'].name} "
                f"but {len(labels)} labels in {files['labels'].name}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(
                f"IDX file {files['labels']}: labels must lie in [0, {len(classes) - 1}], "
                f"found {labels.min()}..{labels.max()}"
            )
        if limit is not None:
            images, labels = images[:limit].copy(), labels[:limit].copy()
        self.images = images
        self._labels = labels.astype(np.int64)
        self.image_size = (images.shape[1], images.shape[2])

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = torch.from_numpy(self.images[i]).to(torch.float32).div_(255.0)
        return {"image": img.unsqueeze(0), "label": int(self._labels[i])}

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def fingerprint(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "limit": self.limit,
            "files": {k: {"file": p.name, "sha256": cached_sha256(p)} for k, p in self.files.items()},
        }


def find_idx_files(root: Path, split: str) -> dict[str, Path | None]:
    """The images and labels files of ``split`` in ``root`` (``None`` where missing).

    Accepts the original names (``train-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``),
    un-gzipped, and the ``train-images.idx3-ubyte`` spelling.
    """
    prefix = _FILE_PREFIX[split]
    found: dict[str, Path | None] = {}
    for kind, nd in (("images", 3), ("labels", 1)):
        names = [f"{prefix}-{kind}-idx{nd}-ubyte", f"{prefix}-{kind}.idx{nd}-ubyte"]
        found[kind] = next((root / (n + gz) for n in names for gz in (".gz", "") if (root / (n + gz)).is_file()), None)
    return found


def _load_idx_split(
    name: str, split: str, root: Path, classes: list[str], limit: int | None, missing_hint: str
) -> IDXDataset:
    files = find_idx_files(root, split)
    missing = [f"{_FILE_PREFIX[split]}-{k}-idx{3 if k == 'images' else 1}-ubyte.gz" for k, p in files.items() if p is None]
    if missing:
        raise DataError(f"dataset {name!r}: {' and '.join(missing)} not found in {root}; {missing_hint}")
    paths = {k: p for k, p in files.items() if p is not None}
    return IDXDataset(name, split, read_idx(paths["images"]), read_idx(paths["labels"]), classes, paths, limit)


@DATASETS.register("fashion-mnist", description="Zalando's Fashion-MNIST, 28x28 grey-scale, 10 classes (IDX files)")
def create_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None, *, limit: int | None = None, **unknown: Any
) -> IDXDataset:
    """Fashion-MNIST from the original IDX files in ``root`` (default ``/usr/share/datasets/fashion-mnist``,
    where the Debian package ``dataset-fashion-mnist`` puts them). Splits ``train`` (60000) and
    ``test`` (10000); ``limit`` keeps the first N items.
    """
    reject_unknown_options("fashion-mnist", unknown, ["limit"])
    check_split(split, ("train", "test"), "fashion-mnist")
    limit = check_int(limit, "dataset 'fashion-mnist': setting 'limit'", 1, none_ok=True, error=DataError)
    hint = "run `apt-get install dataset-fashion-mnist` or pass --root DIR (root= in Python) to a folder with the IDX files"
    root = FASHION_MNIST_ROOT if root is None else Path(root).expanduser()
    return _load_idx_split("fashion-mnist", split, root, FASHION_MNIST_CLASSES, limit, hint)


@DATASETS.register("mnist", description="MNIST handwritten digits, 28x28 grey-scale, 10 classes (IDX files)")
def create_mnist(
    split: str = "train", root: str | os.PathLike | None = None, *, limit: int | None = None, **unknown: Any
) -> IDXDataset:
    """MNIST from the original IDX files in ``root`` (default ``/usr/share/datasets/mnist`` if it
    exists). Splits ``train`` and ``test``; ``limit`` keeps the first N items.
    """
    reject_unknown_options("mnist", unknown, ["limit"])
    check_split(split, ("train", "test"), "mnist")
    limit = check_int(limit, "dataset 'mnist': setting 'limit'", 1, none_ok=True, error=DataError)
    hint = "pass --root DIR (root= in Python) to a folder with the original MNIST IDX files"
    if root is None:
        if not MNIST_ROOT.is_dir():
            raise DataError(f"dataset 'mnist' has no default folder ({MNIST_ROOT} does not exist); {hint}")
        root = MNIST_ROOT
    return _load_idx_split("mnist", split, Path(root).expanduser(), MNIST_CLASSES, limit, hint)
