"""A grid of dataset samples, with part and background masks drawn over them where present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data.base import ImageDataset
from ..errors import SparsexError
from ..io import atomic_file


def _overlay(image: np.ndarray, masks: np.ndarray, colours: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend each mask ``(K, H, W)`` into ``image (H, W, 3)`` with its colour ``colours[k]``."""
    out = image.copy()
    for mask, colour in zip(masks, colours):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask (H, W)`` with a 4-neighbour outside the mask."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def preview_grid(dataset: ImageDataset, out: str | os.PathLike, n: int = 16, seed: int = 0, masks: bool = True) -> Path:
    """Save a PNG grid of ``n`` random samples of ``dataset`` (titled with class names).

    Items with ``part_masks`` get a second panel: the faded image with each part painted in its
    own colour (legend with ``part_names``) and background objects outlined in black.
    """
    if n < 1:
        raise SparsexError(f"preview needs n >= 1 samples, got {n}")
    if len(dataset) == 0:
        raise SparsexError(f"dataset {dataset.name!r} split {dataset.split!r} is empty")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise SparsexError(f"preview output must be a .png file, got {out}")
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    items = [dataset[int(i)] for i in indices]
    with_masks = masks and "part_masks" in items[0]
    panels = 2 if with_masks else 1
    per_row = min(len(items), 4 if with_masks else 8)  # samples per row (each sample: 1 or 2 panels)
    cols, rows = per_row * panels, int(np.ceil(len(items) / per_row))
    fig = Figure(figsize=(2.0 * cols, 2.2 * rows + (0.6 if with_masks else 0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    part_colours = colormaps["tab10"](np.arange(10))[:, :3]
    for ax in axes.flat:
        ax.axis("off")
    for k, item in enumerate(items):
        image = item["image"].permute(1, 2, 0).numpy()
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        title = dataset.classes[item["label"]]
        ax = axes.flat[k * panels]
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        if with_masks:
            part_masks = item["part_masks"].numpy()
            grey = np.repeat(0.45 + 0.5 * image.mean(axis=2, keepdims=True), 3, axis=2)  # the scene, faded
            overlay = _overlay(grey, part_masks, part_colours[: len(part_masks)], alpha=0.85)
            for mask, present in zip(item.get("background_masks", []), item.get("background_present", [])):
                if present:
                    overlay[_outline(mask.numpy())] = 0.0
            axes.flat[k * panels + 1].imshow(overlay, interpolation="nearest")
            axes.flat[k * panels + 1].set_title("parts", fontsize=8)
    if with_masks:
        names = list(items[0]["part_names"])
        handles = [Patch(color=part_colours[i], label=name) for i, name in enumerate(names)]
        handles.append(Patch(facecolor="none", edgecolor="black", label="background object (outline)"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)
    fig.suptitle(f"{dataset.name} / {dataset.split}: {len(items)} of {len(dataset)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if with_masks else 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return out
