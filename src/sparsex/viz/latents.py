"""Figures of latent models: labelled image grids (traversals, reconstructions) and heat maps
(class x dimension spike probabilities, class correlation matrices)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..io import atomic_file


def _save(fig: Figure, out: str | os.PathLike, dpi: int = 110) -> Path:
    out = Path(out)
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return out


def _as_display(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` -> an array ``imshow`` draws (grey for one channel)."""
    arr = image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def image_grid_figure(blocks: Sequence[tuple[str, Sequence[str], torch.Tensor]], out: str | os.PathLike,
                      column_labels: Sequence[str] | None = None, title: str = "") -> Path:
    """Save stacked blocks of image rows as one PNG.

    Each block is ``(block title, row labels, images (R, S, C, H, W))`` in ``[0, 1]``: ``R`` labelled
    rows of ``S`` images; every block needs the same ``S``. ``column_labels`` (``S`` strings) go
    above the first row. The block title is written on the left of its first row.
    """
    steps = blocks[0][2].shape[1]
    rows = sum(len(block[2]) for block in blocks)
    fig = Figure(figsize=(0.9 * steps + 1.6, 0.95 * rows + 0.7))
    axes = fig.subplots(rows, steps, squeeze=False)
    row = 0
    for block_title, labels, images in blocks:
        for r in range(len(images)):
            for s in range(steps):
                ax = axes[row, s]
                ax.imshow(_as_display(images[r, s]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0 and column_labels is not None:
                    ax.set_title(column_labels[s], fontsize=7)
            label = f"{block_title}\n{labels[r]}" if r == 0 and block_title else labels[r]
            axes[row, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
            row += 1
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def heatmap_figure(matrix: torch.Tensor | np.ndarray, out: str | os.PathLike, row_labels: Sequence[str],
                   column_labels: Sequence[str] | None = None, title: str = "", xlabel: str = "",
                   cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                   annotate: bool = False, colorbar_label: str = "") -> Path:
    """Save a heat map of ``matrix (R, S)`` (NaN drawn blank) with labelled rows; ``annotate``
    writes each value (two decimals) into its cell."""
    data = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=float)
    r, s = data.shape
    fig = Figure(figsize=(min(16.0, 2.5 + 0.22 * s + (0.45 * s if annotate else 0)), 1.2 + 0.38 * r))
    ax = fig.subplots()
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(r), labels=list(row_labels), fontsize=8)
    if column_labels is not None:
        ax.set_xticks(range(s), labels=list(column_labels), fontsize=7, rotation=60, ha="right")
    else:
        step = max(1, s // 16)
        ax.set_xticks(range(0, s, step), labels=[str(j) for j in range(0, s, step)], fontsize=7)
    if annotate:
        for i in range(r):
            for j in range(s):
                if np.isfinite(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(im.norm(data[i, j]) - 0.5) > 0.3 else "black")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(colorbar_label, fontsize=8)
    fig.tight_layout()
    return _save(fig, out)
