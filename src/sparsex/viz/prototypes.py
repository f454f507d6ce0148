"""Figures of prototype explanations: the heat map of each contributing prototype over the image,
next to the training patches that activate that prototype most (its gallery)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..data.base import ImageDataset
from ..errors import DataError, InputError
from ..io import atomic_file

if TYPE_CHECKING:
    from ..explainers.prototypes import Gallery, PrototypeExplanation

#: At most this many prototype rows in one figure; the title says how many more contribute.
MAX_ROWS = 10
#: At most this many predicted classes listed in the header.
MAX_CLASS_LINES = 5
#: What the figure says about an image whose logits all tie (an abstention).
ABSTAINS_NOTE = "no evidence: abstains"
PATCH_FILL = 0.5  # grey shown where a patch window reaches past the image border


def crop_patch(image: torch.Tensor, cell: tuple[int, int], feature_size: tuple[int, int],
               patch_scale: float = 2.0, size: int = 64) -> torch.Tensor:
    """The patch of ``image (C, H, W)`` around feature cell ``(i, j)`` of an ``(h, w)`` map, as
    ``(3, size, size)``.

    With strides ``sy = H / h`` and ``sx = W / w`` the window is ``patch_scale * sy`` by
    ``patch_scale * sx`` pixels centred on ``((i + 0.5) sy, (j + 0.5) sx)``; the part outside the
    image is grey, so the cell stays at the patch centre. Grey images are repeated to 3 channels.
    """
    c, H, W = image.shape
    (i, j), (h, w) = cell, feature_size
    sy, sx = H / h, W / w
    y0, y1 = round((i + 0.5 - patch_scale / 2) * sy), round((i + 0.5 + patch_scale / 2) * sy)
    x0, x1 = round((j + 0.5 - patch_scale / 2) * sx), round((j + 0.5 + patch_scale / 2) * sx)
    window = torch.full((c, max(y1 - y0, 1), max(x1 - x0, 1)), PATCH_FILL)
    ys, xs = slice(max(y0, 0), min(y1, H)), slice(max(x0, 0), min(x1, W))
    window[:, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = image[:, ys, xs]
    patch = F.interpolate(window[None].float(), size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp(0, 1)
    return patch.expand(3, -1, -1) if c == 1 else patch


def gallery_patches(gallery: "Gallery", dataset: ImageDataset, prototypes: Sequence[int], patch_scale: float = 2.0,
                    size: int = 64) -> torch.Tensor:
    """Crop the gallery patches of the listed ``prototypes`` only: ``(len(prototypes), k, 3, size, size)``.

    Row ``r`` holds the ``k`` training patches of prototype ``prototypes[r]``, best first: item
    ``gallery.indices[p, m]`` of ``dataset`` cropped around ``gallery.locations[p, m]`` with
    :func:`crop_patch`. Each item is read from ``dataset`` once.
    """
    (h, w), k = gallery.feature_size, gallery.k
    out = torch.empty(len(prototypes), k, 3, size, size)
    images: dict[int, torch.Tensor] = {}
    for r, p in enumerate(prototypes):
        for m in range(k):
            n = int(gallery.indices[p, m])
            if n not in images:
                if not 0 <= n < len(dataset):
                    raise DataError(f"gallery refers to item {n}, but dataset {dataset.name!r} has {len(dataset)} items; "
                                    f"rebuild the gallery for this dataset")
                images[n] = dataset[n]["image"]
            out[r, m] = crop_patch(images[n], divmod(int(gallery.locations[p, m]), w), (h, w), patch_scale, size)
    return out


def _rgb(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` -> ``(H, W, 3)`` numpy for imshow."""
    image = image.detach().float().cpu().clamp(0, 1)
    return (image.expand(3, -1, -1) if image.shape[0] == 1 else image).permute(1, 2, 0).numpy()


def _short(name: str, limit: int = 16) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def explanation_figure(explanation: "PrototypeExplanation", image: torch.Tensor, gallery: "Gallery | None" = None,
                       gallery_patches: torch.Tensor | None = None, class_names: Sequence[str] | None = None,
                       out: str | os.PathLike = "explanation.png", max_rows: int = MAX_ROWS) -> Path:
    """Write one PNG explaining a prediction; returns its path.

    Header: the image ``(C, H, W)`` and the predicted classes with their probabilities, and how
    the explained logit splits into prototype evidence and the rest. Then one row per
    contributing prototype (at most ``max_rows``, largest contribution first): its heat map over
    the image with the arg-max cell marked, ``score x weight = contribution``, and its gallery
    patches ``gallery_patches (rows, k, 3, ph, pw)`` (row ``r`` for ``explanation.prototypes[r]``)
    titled with their class (from ``gallery.labels`` and ``class_names``) and score.

    Where the model's logits for this image all tie (``explanation.abstains``,
    :func:`sparsex.metrics.abstains`), the listed top class is only the lowest index, not a
    decision: the title and the header say "no evidence: abstains" (accuracy counts such an image
    as wrong).
    """
    abstains = explanation.abstains
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError(f"explanation figure must be a .png file, got {out}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or tuple(image.shape[-2:]) != tuple(explanation.image_size):
        raise InputError(f"figure image must be (C, {explanation.image_size[0]}, {explanation.image_size[1]}) "
                         f"like the explained one, got {tuple(image.shape)}")
    rows = explanation.prototypes[:max_rows]
    if gallery_patches is not None and (gallery_patches.dim() != 5 or gallery_patches.shape[0] < len(rows)):
        raise InputError(f"gallery_patches must be (rows >= {len(rows)}, k, 3, ph, pw), got {tuple(gallery_patches.shape)}")
    k = 0 if gallery_patches is None else gallery_patches.shape[1]

    def name(label: int) -> str:
        return _short(class_names[label]) if class_names is not None and 0 <= label < len(class_names) else f"class {label}"

    cols = 1 + max(k, 3)
    fig = Figure(figsize=(1.75 * cols, 2.1 * (1 + len(rows)) + 0.5))
    grid = fig.add_gridspec(1 + len(rows), cols, height_ratios=[1.15] + [1.0] * len(rows))
    picture = _rgb(image)

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(picture, interpolation="nearest")
    ax.set_title("input", fontsize=9)
    ax.axis("off")
    text = fig.add_subplot(grid[0, 1:])
    text.axis("off")
    lines = [ABSTAINS_NOTE + " (all logits tie; the arrow marks the lowest class index)"] if abstains else []
    lines += ["predicted (probability):"]
    lines += [f"  {'→ ' if p.label == explanation.target else '   '}{name(p.label)}: {p.probability:.3f}"
              for p in explanation.predictions[:MAX_CLASS_LINES]]
    if len(explanation.predictions) > MAX_CLASS_LINES:
        lines.append(f"     ... and {len(explanation.predictions) - MAX_CLASS_LINES} more")
    evidence = sum(c.contribution for c in explanation.prototypes)
    lines += ["", f"explained: {name(explanation.target)}, logit {explanation.logit:.3f}",
              f"  = {evidence:.3f} from {len(explanation.prototypes)} prototypes (> eps {explanation.eps:g})",
              f"  + {explanation.logit - evidence:.3f} bias and weaker prototypes"]
    text.text(0.02, 0.95, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace",
              transform=text.transAxes)

    for r, contribution in enumerate(rows, start=1):
        heat = contribution.heatmap.numpy()
        span = heat.max() - heat.min()
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(picture, interpolation="nearest")
        ax.imshow((heat - heat.min()) / (span if span > 0 else 1.0), cmap="jet", alpha=0.5, interpolation="bilinear")
        y, x = contribution.location
        ax.plot(x - 0.5, y - 0.5, marker="o", markersize=11, markerfacecolor="none", markeredgecolor="white",
                markeredgewidth=2)
        ax.set_title(f"prototype {contribution.prototype}:\n{contribution.score:.3f} × {contribution.weight:.3f}"
                     f" = {contribution.contribution:.3f}", fontsize=8)
        ax.axis("off")
        for m in range(k):
            ax = fig.add_subplot(grid[r, 1 + m])
            ax.imshow(_rgb(gallery_patches[r - 1, m]), interpolation="nearest")
            if gallery is not None:
                p = contribution.prototype
                label = int(gallery.labels[p, m])  # -1: built from bare features, class unknown
                heading = name(label) if label >= 0 else f"item {int(gallery.indices[p, m])}"
                ax.set_title(f"{heading}\ns={float(gallery.scores[p, m]):.3f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if m == 0:
                ax.set_ylabel("nearest training\npatches", fontsize=7)
    more = len(explanation.prototypes) - len(rows)
    fig.suptitle(f"{ABSTAINS_NOTE + ' — ' if abstains else ''}{name(explanation.target)}: "
                 f"{len(explanation.prototypes)} contributing prototypes"
                 + (f" (top {len(rows)} shown, {more} more)" if more else ""), fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return out
