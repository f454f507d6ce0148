"""The part world on disk, and the dataset ``"parts"`` of the registry.

:func:`write_parts_tree` writes a scene set as a folder of PNGs with 16-bit mask PNGs
(:func:`encode_masks`) and a ``meta.json``; ``create_dataset("parts", root=...)``
(:func:`create_parts`) reads such a folder back by regenerating it from its ``meta.json``
(:func:`read_parts_meta`).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..data.base import DATASETS, check_split
from ..errors import DataError
from ..io import atomic_dir, read_json, write_json
from ..progress import progress_bar
from .dataset import PartWorld
from .scene import BODY_BIT, GENERATOR_VERSION, SPLITS, PartWorldConfig
from .shapes import PART_NAMES, slot_variants


def _mask_layout(config: PartWorldConfig) -> dict[str, Any]:
    k = len(PART_NAMES)
    layout = {
        "encoding": "16-bit grey PNG; pixel bit b is set where the layer with bit b is visible",
        "parts": {name: i for i, name in enumerate(PART_NAMES)},
        "background_objects": [k + j for j in range(config.background_objects)],
        "body": BODY_BIT,
    }
    if config.max_occluders:
        layout["occluders"] = [k + config.max_clutter + j for j in range(config.max_occluders)]
    return layout


def encode_masks(part_masks: np.ndarray, background_masks: np.ndarray, body_mask: np.ndarray) -> np.ndarray:
    """Pack masks into a uint16 ``(H, W)`` bitfield: bit k = part slot k (k < 6), bit 6 + j =
    background object j (clutter, then occluders), bit 15 = body. Inputs are bool ``(6, H, W)``, ``(M, H, W)``, ``(H, W)``."""
    bits = np.zeros(body_mask.shape, dtype=np.uint16)
    for b, m in enumerate(itertools.chain(part_masks, background_masks)):
        bits |= m.astype(np.uint16) << b
    bits |= body_mask.astype(np.uint16) << BODY_BIT
    return bits


def decode_masks(bits: np.ndarray, max_clutter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_masks`: ``(part_masks (6, H, W), background_masks (M, H, W),
    body_mask (H, W))``, all bool; ``max_clutter`` is ``M``, the config's ``background_objects``
    (``max_clutter + max_occluders``)."""
    bits = bits.astype(np.uint16)
    k = len(PART_NAMES)
    planes = [(bits >> b) & 1 == 1 for b in range(k + max_clutter)]
    parts = np.stack(planes[:k])
    background = np.stack(planes[k:]) if max_clutter else np.zeros((0, *bits.shape), dtype=bool)
    return parts, background, (bits >> BODY_BIT) & 1 == 1


def write_parts_tree(
    out: str | os.PathLike,
    config: PartWorldConfig,
    splits: Sequence[str] = SPLITS,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the part world as PNG files and return the folder.

    Layout: ``out/<split>/<class_name>/<split>_<index:06d>.png`` (8-bit RGB),
    ``out/masks/<split>/<class_name>/<same name>.png`` (16-bit bitfield, see
    :func:`encode_masks`; the layout is repeated in ``meta.json``) and ``out/meta.json``
    (generator version, full config, classes with their part variants, part names, mask bit
    layout, counts per split). Every class folder exists even when it is empty; a split of size 0
    is not written (readers then say the data has no such split). The folder is built under a
    temporary name and moved into place only when complete.
    """
    datasets = [d for d in (PartWorld(split, config) for split in dict.fromkeys(splits)) if len(d)]
    with atomic_dir(out, overwrite) as tmp:
        with progress_bar(total=sum(len(d) for d in datasets), desc="parts", unit="img", disable=not progress) as bar:
            for ds in datasets:
                for sub in (tmp / ds.split, tmp / "masks" / ds.split):
                    for name in config.class_names:
                        (sub / name).mkdir(parents=True)
                for i in range(len(ds)):
                    item = ds[i]
                    rel = Path(config.class_names[item["label"]]) / f"{ds.split}_{i:06d}.png"
                    rgb = np.round(item["image"].numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)
                    Image.fromarray(rgb).save(tmp / ds.split / rel, compress_level=1)
                    bits = encode_masks(item["part_masks"].numpy(), item["background_masks"].numpy(), item["body_mask"].numpy())
                    Image.fromarray(bits).save(tmp / "masks" / ds.split / rel, compress_level=1)
                    bar.update()
        write_json(
            tmp / "meta.json",
            {
                "format": "sparsex-parts",
                "generator_version": GENERATOR_VERSION,
                "seed": config.seed,
                "config": asdict(config),
                "part_names": list(PART_NAMES),
                "part_variants": {slot: list(names) for slot, names in slot_variants(config.variants).items()},
                "classes": [{"name": n, "label": c, "parts": p}
                            for c, (n, p) in enumerate(zip(config.class_names, config.class_parts))],
                "mask_bits": _mask_layout(config),
                "counts": {ds.split: len(ds) for ds in datasets},
            },
        )
    return Path(out)


def read_parts_meta(root: str | os.PathLike) -> tuple[PartWorldConfig, tuple[str, ...]]:
    """Config and written splits of a tree made by :func:`write_parts_tree`.

    Raises :class:`DataError` when ``meta.json`` is missing or corrupt, or was written by another
    generator version.
    """
    path = Path(root) / "meta.json"
    meta = read_json(path, "part-world meta.json")
    if not isinstance(meta, dict) or meta.get("format") != "sparsex-parts":
        raise DataError(f"{path} is not a part-world meta.json (no format 'sparsex-parts')")
    if meta.get("generator_version") != GENERATOR_VERSION:
        raise DataError(
            f"{path} was written by part-world generator {meta.get('generator_version')!r}, this is "
            f"{GENERATOR_VERSION!r}; regenerate the folder with write_parts_tree"
        )
    try:
        config = PartWorldConfig.from_dict(meta["config"])
        splits = tuple(check_split(s, SPLITS, "parts") for s in meta["counts"])
    except (KeyError, TypeError, AttributeError, DataError) as e:
        raise DataError(f"corrupt {path}: {e}") from None
    return config, splits


@DATASETS.register("parts", description="procedural part world with pixel-exact part masks and rendered interventions")
def create_parts(split: str = "train", root: str | os.PathLike | None = None, **cfg: Any) -> PartWorld:
    """The part world split ``split``.

    With ``root=None`` the images are generated from ``PartWorldConfig(**cfg)``. With ``root``
    pointing at a folder written by :func:`write_parts_tree`, the config is read from its
    ``meta.json`` (no other settings allowed) and the same images are regenerated exactly; the PNG
    files are not read.
    """
    if root is None:
        return PartWorld(split, PartWorldConfig.from_dict(cfg))
    if cfg:
        raise DataError(
            f"part world settings ({', '.join(sorted(cfg))}) cannot be combined with root={root}; they come from its meta.json"
        )
    config, splits = read_parts_meta(root)
    return PartWorld(check_split(split, splits, "parts"), config)
