"""Any class-per-folder image tree: ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..checks import check_int
from ..errors import DataError, MissingSplitError
from .base import (
    DATASETS,
    ImageDataset,
    check_channels,
    files_digest,
    load_image,
    pil_to_tensor,
    reject_unknown_options,
    resize_center_crop,
)

#: File name endings (lower case) read as images; other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Folder names that mark a tree as split into ``root/<split>/<class>/...``.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


def _visible(names: list[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("."))


def scan_class_tree(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    """Find ``folder/<class>/**/<image>``: sorted class names, image paths and their labels.

    Hidden files and folders are skipped; a class folder without images, or a tree without class
    folders, raises :class:`DataError`.
    """
    classes = [d.name for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if not classes:
        raise DataError(f"image folder {folder} has no class folders (expected {folder}/<class>/<image>)")
    paths: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(folder / cls, followlinks=True):
            dirnames[:] = _visible(dirnames)
            found += [Path(dirpath) / n for n in _visible(filenames) if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise DataError(
                f"class folder {folder / cls} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
            )
        paths += found
        labels += [label] * len(found)
    return classes, paths, labels


def find_image_files(path: str | os.PathLike) -> tuple[Path, list[Path]]:
    """``(base, files)``: one image file (its folder as the base), or every file with an image
    suffix under a folder, recursively and sorted (hidden files and folders skipped)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise DataError(f"images not found: {path} is neither an image file nor a folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"folder {path} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    return path, files


class ImageFolderDataset(ImageDataset):
    """Images from a class-per-folder tree: items ``image`` ``(C, S, S)`` float32 in ``[0, 1]``
    (``(C, H, W)`` at native size when ``image_size`` is ``None``), ``label`` int and ``path`` str.

    ``folder`` is the tree that was read (``root/<split>`` when that exists, else ``root``).
    Images are converted to RGB (``channels=3``) or grey-scale (``channels=1``); with
    ``image_size`` the shorter side is resized to it and the centre square cropped.
    """

    name = "imagefolder"

    def __init__(
        self, root: str | os.PathLike, split: str = "train", image_size: int | None = None, channels: int = 3
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder")
        self.split = split
        self.folder = self._split_folder()
        self.size = check_int(image_size, f"dataset {self.name!r}: setting 'image_size'", 1, none_ok=True, error=DataError)
        self.channels = check_channels(channels, "dataset 'imagefolder': setting 'channels'")
        self.image_size = None if self.size is None else (self.size, self.size)
        self.classes, self.paths, labels = scan_class_tree(self.folder)
        self._labels = np.array(labels, dtype=np.int64)
        self._digest: str | None = None

    def _split_folder(self) -> Path:
        if (self.root / self.split).is_dir():
            return self.root / self.split
        splits = [n for n in SPLIT_NAMES if (self.root / n).is_dir()]
        if splits:
            raise MissingSplitError(
                f"image folder {self.root} has no split folder {self.split!r}; found: {', '.join(splits)}"
            )
        if self.split != "train":
            warnings.warn(
                f"image folder {self.root} is not split into train/test folders: split {self.split!r} "
                f"reads the same images as every other split", stacklevel=3,
            )
        return self.root  # an unsplit tree serves every split name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = load_image(self.paths[i], self.channels)
        if self.size is not None:
            img = resize_center_crop(img, self.size)
        return {"image": pil_to_tensor(img), "label": int(self._labels[i]), "path": str(self.paths[i])}

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def verify(self) -> None:
        """Decode every image once (JPEGs at reduced scale, which still reads the whole file) and
        raise :class:`DataError` naming the first file that is not a readable image."""
        for path in self.paths:
            try:
                with Image.open(path) as img:
                    img.draft(img.mode, (1, 1))
                    img.load()
            except Image.DecompressionBombError as e:
                raise DataError(f"cannot read image {path}: too large ({e})") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise DataError(f"cannot read image {path}: not an image or corrupt ({e})") from None

    def fingerprint(self) -> dict[str, Any]:
        if self._digest is None:
            self._digest = files_digest(self.folder, self.paths)
        return {
            "name": self.name,
            "split": self.split,
            "image_size": self.size,
            "channels": self.channels,
            "classes": self.classes,
            "files_sha256": self._digest,
        }


@DATASETS.register("imagefolder", description="any class-per-folder image tree: root[/<split>]/<class>/<image>")
def create_imagefolder(
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    channels: int = 3,
    **unknown: Any,
) -> ImageFolderDataset:
    """Images under ``root/<split>/<class>/`` (or ``root/<class>/`` when the tree is not split).

    ``image_size``: resize the shorter side and centre-crop to a square (``None`` keeps native
    sizes); ``channels``: 3 (RGB) or 1 (grey-scale).
    """
    reject_unknown_options("imagefolder", unknown, ["image_size", "channels"])
    if root is None:
        raise DataError("dataset 'imagefolder' needs a folder: pass --root DIR (root= in Python)")
    return ImageFolderDataset(root, split, image_size=image_size, channels=channels)
