"""Caltech-UCSD Birds-200-2011 (``cub200``) with its part keypoints, from the standard local layout.

``root`` is the ``CUB_200_2011`` folder (or its parent) holding ``images.txt``,
``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt``, ``bounding_boxes.txt``,
``images/<class>/<file>.jpg``, ``parts/parts.txt`` and ``parts/part_locs.txt``.
Keypoints and boxes are read as continuous pixel coordinates: the image spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_int
from ..errors import DataError
from .base import (
    DATASETS,
    ImageDataset,
    check_split,
    files_digest,
    load_image,
    pil_to_tensor,
    reject_unknown_options,
    resize_center_crop,
    resize_center_crop_geometry,
)

METADATA_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
PARTS_FILES = ("parts/parts.txt", "parts/part_locs.txt")
BBOX_FILE = "bounding_boxes.txt"
_FIELD_NAMES = {"i": "integer", "f": "number", "s": "text"}


def find_cub_root(root: str | os.PathLike) -> Path:
    """``root`` itself if it holds ``images.txt``, else ``root/CUB_200_2011``; :class:`DataError` if neither."""
    root = Path(root).expanduser()
    for folder in (root, root / "CUB_200_2011"):
        if (folder / "images.txt").is_file():
            return folder
    if not root.is_dir():
        raise DataError(f"dataset 'cub200': folder {root} does not exist")
    raise DataError(
        f"dataset 'cub200': {root / 'images.txt'} not found (nor in {root / 'CUB_200_2011'}); "
        "pass the CUB_200_2011 folder as --root DIR (root= in Python)"
    )


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"dataset 'cub200': missing file {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"dataset 'cub200': cannot read {path}: {e}") from None


def read_table(path: Path, fields: str) -> list[tuple[int, list[Any]]]:
    """Parse a whitespace-separated text file into ``(line number, row)`` pairs, skipping blank lines.

    ``fields`` gives one letter per column: ``i`` int, ``f`` float, ``s`` text (last column only;
    it takes the rest of the line, spaces included). A missing file or a line that does not match
    raises :class:`DataError` naming the file and line.
    """
    casts = [{"i": int, "f": float, "s": str}[c] for c in fields]
    maxsplit = len(fields) - 1 if fields.endswith("s") else -1
    rows = []
    for lineno, line in enumerate(_read_lines(path), 1):
        parts = line.split(maxsplit=maxsplit)
        if not parts:
            continue
        try:
            if len(parts) != len(fields):
                raise ValueError
            rows.append((lineno, [cast(p) for cast, p in zip(casts, parts)]))
        except ValueError:
            expected = " ".join(_FIELD_NAMES[c] for c in fields)
            raise DataError(f"{path}, line {lineno}: expected '{expected}', got {line.strip()[:80]!r}") from None
    return rows


def read_numeric_table(path: Path, fields: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_table` for all-numeric ``fields`` (``i``/``f``), vectorised for large files.

    Returns the values ``(N, len(fields))`` float64 and their 1-based line numbers ``(N,)``.
    """
    lines = _read_lines(path)
    linenos = np.array([k for k, line in enumerate(lines, 1) if line.strip()], dtype=np.int64)
    if len(linenos) == 0:
        return np.zeros((0, len(fields))), linenos
    try:
        values = np.loadtxt([lines[k - 1] for k in linenos], dtype=np.float64, ndmin=2, comments=None)
        ints = values[:, [c == "i" for c in fields]] if values.shape[1] == len(fields) else None
    except ValueError:
        ints = None
    if ints is None or not np.all(ints == np.round(ints)):
        read_table(path, fields)  # raises DataError at the first line that does not parse
        raise DataError(f"{path}: cannot parse as columns '{' '.join(_FIELD_NAMES[c] for c in fields)}'")
    return values, linenos


def _read_id_map(path: Path, fields: str) -> dict[int, tuple[Any, ...]]:
    """``read_table`` keyed by the first (integer id) column; duplicate ids raise :class:`DataError`."""
    out: dict[int, tuple[Any, ...]] = {}
    for lineno, (key, *values) in read_table(path, fields):
        if key in out:
            raise DataError(f"{path}, line {lineno}: id {key} appears twice")
        out[key] = tuple(values)
    return out


def _lookup(table: dict[int, tuple[Any, ...]], key: int, path: Path) -> tuple[Any, ...]:
    if key not in table:
        raise DataError(f"{path}: no entry for image id {key}")
    return table[key]


def _positions(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each ``query`` value in the distinct ``keys`` (0 where absent) and whether it is there."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys, query, sorter=order), len(keys) - 1)
    found = keys[order[pos]] == query
    return np.where(found, order[pos], 0), found


class CUBDataset(ImageDataset):
    """One split of CUB-200-2011. Items:

    - ``image``: float32 ``(3, S, S)`` in ``[0, 1]`` (``S = image_size``; native ``(3, H, W)`` when
      ``image_size`` is ``None``), optionally cropped to the bird's bounding box first;
    - ``label``: int in ``[0, 200)``; ``image_id``: CUB's image id; ``path``: the image file;
    - ``part_locs``: float32 ``(P, 2)`` keypoints ``(x, y)`` in the output image's pixels
      (``(0, 0)`` where not visible); ``part_visible``: bool ``(P,)``, False for parts CUB marks
      invisible and for keypoints outside the crop; ``part_names``: the P names (15 in CUB).
    """

    name = "cub200"
    channels = 3

    def __init__(
        self, root: str | os.PathLike, split: str = "train", image_size: int | None = 224, crop_to_bbox: bool = False
    ) -> None:
        self.split = check_split(split, ("train", "test"), self.name)
        self.size = check_int(image_size, f"dataset {self.name!r}: setting 'image_size'", 1, none_ok=True, error=DataError)
        if not isinstance(crop_to_bbox, bool):
            raise DataError(f"dataset 'cub200': setting 'crop_to_bbox' must be true or false, got {crop_to_bbox!r}")
        self.crop_to_bbox = crop_to_bbox
        self.image_size = None if self.size is None else (self.size, self.size)
        self.folder = find_cub_root(root)
        self._load_metadata()
        self._digest: str | None = None

    def _load_metadata(self) -> None:
        f = self.folder
        labels_path, split_path = f / "image_class_labels.txt", f / "train_test_split.txt"
        images = _read_id_map(f / "images.txt", "is")
        class_of = _read_id_map(labels_path, "ii")
        is_train = _read_id_map(split_path, "ii")
        class_rows = _read_id_map(f / "classes.txt", "is")
        part_rows = _read_id_map(f / "parts" / "parts.txt", "is")
        class_index = {cid: k for k, cid in enumerate(sorted(class_rows))}
        self.classes = [class_rows[c][0] for c in sorted(class_rows)]
        self.part_names = [part_rows[p][0] for p in sorted(part_rows)]
        if not self.part_names:
            raise DataError(f"{f / 'parts' / 'parts.txt'} lists no parts")

        ids, labels = [], []
        for image_id in images:
            (flag,) = _lookup(is_train, image_id, split_path)
            if flag not in (0, 1):
                raise DataError(f"{split_path}: image id {image_id} has split flag {flag} (must be 0 or 1)")
            if (flag == 1) != (self.split == "train"):
                continue
            (cid,) = _lookup(class_of, image_id, labels_path)
            if cid not in class_index:
                raise DataError(f"{labels_path}: image id {image_id} has class {cid}, not in classes.txt")
            ids.append(image_id)
            labels.append(class_index[cid])
        if not ids:
            raise DataError(f"dataset 'cub200': split {self.split!r} of {f} holds no images")
        self.image_ids = np.array(ids, dtype=np.int64)
        self._labels = np.array(labels, dtype=np.int64)
        image_dir = f / "images"
        self.paths = [image_dir / images[i][0] for i in ids]

        all_ids, part_ids = (np.array(sorted(table), dtype=np.int64) for table in (images, part_rows))
        self._load_part_locs(f / "parts" / "part_locs.txt", all_ids, part_ids)

        self.bboxes: np.ndarray | None = None
        if self.crop_to_bbox:
            boxes = _read_id_map(f / BBOX_FILE, "iffff")
            self.bboxes = np.array([_lookup(boxes, i, f / BBOX_FILE) for i in ids], dtype=np.float64)
            finite = np.isfinite(self.bboxes).all(axis=1)
            if not finite.all():
                raise DataError(f"{f / BBOX_FILE}: image id {ids[np.argmin(finite)]} has a non-finite box coordinate")
            bad = np.flatnonzero((self.bboxes[:, 2] <= 0) | (self.bboxes[:, 3] <= 0))
            if len(bad):
                raise DataError(f"{f / BBOX_FILE}: image id {ids[bad[0]]} has a box of zero or negative size")

    def _load_part_locs(self, path: Path, all_image_ids: np.ndarray, part_ids: np.ndarray) -> None:
        """Fill ``part_locs`` ``(N, P, 2)`` and ``part_visible`` ``(N, P)`` of this split from ``path``."""
        values, linenos = read_numeric_table(path, "iiffi")
        image_id, part_id, visible = (values[:, k].astype(np.int64) for k in (0, 1, 4))
        checks = [
            (_positions(all_image_ids, image_id)[1], image_id, "unknown image id {}"),
            (_positions(part_ids, part_id)[1], part_id, "unknown part id {}"),
            ((visible == 0) | (visible == 1), visible, "visibility {} (must be 0 or 1)"),
            (np.isfinite(values[:, 2:4]).all(axis=1), values[:, 2], "non-finite keypoint coordinate (x = {})"),
        ]
        bad = ~np.logical_and.reduce([ok for ok, _, _ in checks])
        if bad.any():
            k = int(np.argmax(bad))
            _, column, problem = next(c for c in checks if not c[0][k])
            raise DataError(f"{path}, line {linenos[k]}: {problem.format(column[k])}")
        row, in_split = _positions(self.image_ids, image_id)
        col = _positions(part_ids, part_id)[0]
        self.part_locs = np.zeros((len(self.image_ids), len(part_ids), 2), dtype=np.float64)
        self.part_visible = np.zeros((len(self.image_ids), len(part_ids)), dtype=bool)
        self.part_locs[row[in_split], col[in_split]] = values[in_split, 2:4]
        self.part_visible[row[in_split], col[in_split]] = visible[in_split] == 1

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = load_image(self.paths[i], 3)
        locs = self.part_locs[i].copy()
        visible = self.part_visible[i].copy()
        if self.bboxes is not None:
            x, y, w, h = self.bboxes[i]
            left, top = max(0, math.floor(x)), max(0, math.floor(y))
            right, bottom = min(img.width, math.ceil(x + w)), min(img.height, math.ceil(y + h))
            if right <= left or bottom <= top:
                raise DataError(
                    f"{self.folder / BBOX_FILE}: box of image id {self.image_ids[i]} lies outside its "
                    f"{img.width}x{img.height} image"
                )
            img = img.crop((left, top, right, bottom))
            locs -= (left, top)
        if self.size is not None:
            new_w, new_h, left, top = resize_center_crop_geometry(img.width, img.height, self.size)
            locs = locs * (new_w / img.width, new_h / img.height) - (left, top)
            img = resize_center_crop(img, self.size)
        inside = (locs[:, 0] >= 0) & (locs[:, 0] < img.width) & (locs[:, 1] >= 0) & (locs[:, 1] < img.height)
        visible &= inside
        locs[~visible] = 0.0
        return {
            "image": pil_to_tensor(img),
            "label": int(self._labels[i]),
            "image_id": int(self.image_ids[i]),
            "path": str(self.paths[i]),
            "part_locs": torch.from_numpy(locs.astype(np.float32)),
            "part_visible": torch.from_numpy(visible),
            "part_names": list(self.part_names),
        }

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def fingerprint(self) -> dict[str, Any]:
        if self._digest is None:
            meta = [self.folder / n for n in METADATA_FILES + PARTS_FILES]
            if self.crop_to_bbox:
                meta.append(self.folder / BBOX_FILE)
            self._digest = files_digest(self.folder, meta + self.paths)
        return {
            "name": self.name,
            "split": self.split,
            "image_size": self.size,
            "crop_to_bbox": self.crop_to_bbox,
            "files_sha256": self._digest,
        }


@DATASETS.register("cub200", description="Caltech-UCSD Birds-200-2011 with part keypoints (local CUB_200_2011 folder)")
def create_cub200(
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    image_size: int | None = 224,
    crop_to_bbox: bool = False,
    **unknown: Any,
) -> CUBDataset:
    """CUB-200-2011 from ``root`` (the ``CUB_200_2011`` folder or its parent); splits from
    ``train_test_split.txt``. ``image_size``: shorter side resized and centre square cropped
    (``None`` keeps native sizes); ``crop_to_bbox``: crop to the bird's box first.
    """
    reject_unknown_options("cub200", unknown, ["image_size", "crop_to_bbox"])
    if root is None:
        raise DataError("dataset 'cub200' needs its folder: pass --root DIR (root= in Python) to CUB_200_2011")
    return CUBDataset(root, split, image_size=image_size, crop_to_bbox=crop_to_bbox)
