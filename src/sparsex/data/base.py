"""The dataset contract and the dataset registry.

Every dataset is a ``torch.utils.data.Dataset`` whose items are dicts with at least

- ``image``: float tensor ``(C, H, W)`` in ``[0, 1]`` (C = 1 for grey-scale sets, 3 for colour),
- ``label``: int class index,

plus method-specific keys (the part world adds ``part_masks``, ``part_names``, ...). Datasets
know their ``classes`` and give a JSON ``fingerprint()`` of everything that changes their images,
which the feature cache uses as part of its key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..checks import check_int
from ..errors import DataError, MissingSplitError
from ..registry import Registry

DATASETS: Registry[Callable[..., "ImageDataset"]] = Registry("dataset")


class ImageDataset(torch.utils.data.Dataset):
    """Base class: a split of a labelled image set. Subclasses fill the attributes below."""

    name: str = ""
    split: str = ""
    classes: list[str]
    channels: int = 3
    #: ``(H, W)`` when every image has that size, ``None`` when sizes vary.
    image_size: tuple[int, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def labels(self) -> np.ndarray:
        """All labels of the split as an int array (for samplers and class counts)."""
        return np.array([self[i]["label"] for i in range(len(self))], dtype=np.int64)

    def fingerprint(self) -> dict[str, Any]:
        """JSON-serialisable description of everything that changes this split's images."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, classes={self.num_classes})"


def check_split(split: str, valid: tuple[str, ...], dataset: str) -> str:
    if split not in valid:
        raise MissingSplitError(f"dataset {dataset!r} has no split {split!r}; valid splits: {', '.join(valid)}")
    return split


def reject_unknown_options(dataset: str, options: dict[str, Any], valid: Iterable[str]) -> None:
    """Raise :class:`DataError` if ``options`` (a factory's leftover ``**cfg``) is not empty."""
    if options:
        valid = sorted(valid)
        raise DataError(
            f"dataset {dataset!r} has no setting {', '.join(map(repr, sorted(options)))}; "
            f"valid settings: {', '.join(valid) if valid else '(none)'}"
        )


def files_digest(root: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> str:
    """Hex SHA-256 over the sorted ``(path relative to root, size, mtime_ns)`` of ``paths``.

    A cheap identity for a tree of files (stats only, no reads) for :meth:`ImageDataset.fingerprint`.
    """
    root = Path(root)
    rows = []
    for p in paths:
        p = Path(p)
        try:
            st = p.stat()
        except OSError as e:
            raise DataError(f"cannot read {p}: {e.strerror or e}") from None
        rows.append(f"{p.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n")
    h = hashlib.sha256()
    for row in sorted(rows):
        h.update(row.encode())
    return h.hexdigest()


def load_image(path: str | os.PathLike, channels: int = 3) -> Image.Image:
    """Read an image file as RGB (``channels=3``) or grey-scale (``channels=1``).

    Grey-scale, palette, CMYK and RGBA files are converted (an alpha channel is discarded).
    A missing, truncated or non-image file raises :class:`DataError`.
    """
    path = Path(path)
    check_channels(channels)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB" if channels == 3 else "L")
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"image path {path} is a folder, not an image file") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"cannot read image {path}: too large ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: not an image or corrupt ({e})") from None


def check_channels(channels: Any, what: str = "image channels") -> int:
    """``channels`` must be 1 (grey-scale) or 3 (RGB); a one-line :class:`DataError` naming ``what`` otherwise."""
    if isinstance(channels, bool) or channels not in (1, 3):
        raise DataError(f"{what} must be 1 or 3, got {channels!r} (1: grey-scale, 3: RGB)")
    return int(channels)


def check_image_size(size: Any) -> tuple[int, int] | None:
    """``size`` must be ``None`` or a pair ``(H, W)`` of positive integers; a one-line :class:`DataError` otherwise."""
    if size is None:
        return None
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise DataError(f"image size must be a pair (H, W) of positive integers, got {size!r}")
    return check_int(size[0], "image size H", 1, error=DataError), check_int(size[1], "image size W", 1, error=DataError)


def read_image_tensor(path: str | os.PathLike, channels: int = 3, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An image file as a batch of one, ``(1, channels, H, W)`` float32 in ``[0, 1]``
    (:func:`load_image`), resized (bilinear) to ``size = (H, W)`` when given."""
    size = check_image_size(size)
    img = load_image(path, channels=channels)
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array.reshape(*array.shape[:2], -1).copy()).permute(2, 0, 1).unsqueeze(0)


def save_image_png(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write an image ``(C, H, W)`` with values in ``[0, 1]`` (clamped) as an 8-bit PNG (grey for
    ``C = 1``, RGB for ``C = 3``)."""
    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)


def resize_center_crop(img: Image.Image, size: int, resize_to: int | None = None,
                       resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """Resize so the shorter side is ``resize_to`` (default ``size``; with ``resample``), then take
    the central ``size x size`` crop. ImageNet evaluation is ``resize_center_crop(img, 224, resize_to=256)``."""
    new_w, new_h, left, top = resize_center_crop_geometry(*img.size, size, resize_to)
    img = img.resize((new_w, new_h), resample)
    return img.crop((left, top, left + size, top + size))


def resize_shorter_side(img: Image.Image, side: int,
                        resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """Resize so the shorter side is ``side``, keeping the aspect ratio (the sizes that
    :func:`resize_center_crop` uses before it crops)."""
    new_w, new_h, _, _ = resize_center_crop_geometry(*img.size, side)
    return img.resize((new_w, new_h), resample)


def resize_center_crop_geometry(w: int, h: int, size: int, resize_to: int | None = None) -> tuple[int, int, int, int]:
    """The ``(new_w, new_h, left, top)`` that :func:`resize_center_crop` uses on a ``w x h`` image.

    A point ``(x, y)`` of the input lands at ``(x * new_w / w - left, y * new_h / h - top)``.
    """
    short = resize_to or size
    scale = short / min(w, h)
    new_w, new_h = max(short, round(w * scale)), max(short, round(h * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor ``(C, H, W)`` in ``[0, 1]``."""
    arr = np.array(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def create_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, **cfg: Any) -> ImageDataset:
    """Create a registered dataset split, e.g. ``create_dataset("parts", split="test")``.

    ``root`` is the local folder holding the files (loaders never download); each dataset
    documents its own default and extra settings.
    """
    return DATASETS.create(name, split=split, root=root, **cfg)


def list_datasets() -> list[str]:
    """Names of all registered datasets."""
    return DATASETS.names()
