"""The part world as a dataset: :class:`PartWorld`, one split, items rendered on demand."""

from __future__ import annotations

import operator
from dataclasses import asdict
from typing import Any, Iterable

import numpy as np
import torch

from ..checks import check_int
from ..data.base import ImageDataset, check_split
from ..errors import DataError
from .scene import GENERATOR_VERSION, HARDER_WORLD_SETTINGS, SPLITS, PartWorldConfig, Scene, render_scene, sample_scene, to_8bit
from .shapes import PART_NAMES


class PartWorld(ImageDataset):
    """One split of the part world (see :mod:`sparsex.partworld`).

    Items are dicts: ``image`` float32 ``(3, H, W)`` in [0, 1]; ``label`` int; ``index`` int;
    ``part_names`` list of K=6 str; ``part_masks`` bool ``(K, H, W)``; ``parts_present`` bool
    ``(K,)``; ``body_mask`` bool ``(H, W)``; ``background_masks`` bool ``(M, H, W)`` with
    ``M = max_clutter + max_occluders`` (clutter rows, then occluder rows; rows beyond the scene's
    counts are all False); ``background_present`` bool ``(M,)``. On the train split with
    ``part_dropout > 0`` some items have parts removed (rendered away; their masks are all False and
    ``parts_present`` is False); slots the class does not show are likewise all False / not present.
    Every mask is the layer's *visible* pixels: a part partly hidden by an occluder has only its
    visible pixels in its mask.
    """

    name = "parts"
    channels = 3

    def __init__(self, split: str = "train", config: PartWorldConfig | None = None) -> None:
        self.split = check_split(split, SPLITS, "parts")
        self.config = config if config is not None else PartWorldConfig()
        self.classes = list(self.config.class_names)
        self.image_size = (self.config.image_size, self.config.image_size)
        self.part_names = list(PART_NAMES)
        self.class_parts: list[dict[str, str]] = [dict(parts) for parts in self.config.class_parts]

    def __len__(self) -> int:
        return self.config.size(self.split)

    def _index(self, index: int) -> int:
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for part world split {self.split!r} of size {n}")
        return i

    def scene(self, index: int) -> Scene:
        """The random scene of item ``index`` (no rendering)."""
        return sample_scene(self.config, self.split, self._index(index))

    def render(
        self,
        index: int,
        remove_parts: Iterable[str | int] = (),
        remove_background: Iterable[int] | bool = (),
    ) -> dict[str, Any]:
        """Render item ``index``'s scene without the given parts (names or slot indices) and
        clutter objects (indices, or ``True`` for all). Returns an item dict (see the class
        docstring). Train-time part dropout is *not* applied: the full scene minus exactly the
        named layers is drawn.
        """
        scene = self.scene(index)
        parts = {self._part_index(p) for p in remove_parts}
        if remove_background is True:
            background = set(range(self.config.background_objects))
        elif remove_background is False:
            background = set()
        else:
            background = {self._clutter_index(j) for j in remove_background}
        return self._item(scene, parts, background)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scene(index)
        return self._item(scene, {PART_NAMES.index(p) for p in scene.dropped_parts}, set())

    def _item(self, scene: Scene, parts: set[int], background: set[int]) -> dict[str, Any]:
        out = render_scene(scene, self.config.image_size, self.config.max_clutter, parts, background, self.config.max_occluders)
        return {
            "image": torch.from_numpy(to_8bit(out["image"])),
            "label": scene.label,
            "index": scene.index,
            "part_names": list(PART_NAMES),
            "part_masks": torch.from_numpy(out["part_masks"]),
            "parts_present": torch.from_numpy(out["parts_present"]),
            "body_mask": torch.from_numpy(out["body_mask"]),
            "background_masks": torch.from_numpy(out["background_masks"]),
            "background_present": torch.from_numpy(out["background_present"]),
        }

    def _part_index(self, part: str | int) -> int:
        if isinstance(part, str):
            if part not in PART_NAMES:
                raise DataError(f"unknown part {part!r}; valid parts: {', '.join(PART_NAMES)}")
            return PART_NAMES.index(part)
        return check_int(part, "part (a name or a slot index)", 0, len(PART_NAMES) - 1, error=DataError)

    def _clutter_index(self, j: int) -> int:
        return check_int(j, "background object index", 0, self.config.background_objects - 1, error=DataError)

    def labels(self) -> np.ndarray:
        """Labels without rendering: ``index % classes`` (24 by default)."""
        return np.arange(len(self), dtype=np.int64) % self.config.classes

    def fingerprint(self) -> dict[str, Any]:
        """Name, split, generator version and config. The settings of harder worlds
        (:data:`~sparsex.partworld.scene.HARDER_WORLD_SETTINGS`) are left out where they hold their
        defaults, so the default world's fingerprint (and the feature caches keyed by it) predate them unchanged."""
        defaults = PartWorldConfig()
        config = {k: v for k, v in asdict(self.config).items()
                  if k not in HARDER_WORLD_SETTINGS or v != getattr(defaults, k)}
        return {"name": self.name, "split": self.split, "generator_version": GENERATOR_VERSION, "config": config}
