"""Prototype galleries: for every prototype of a head, the ``k`` training items that activate it
most (their dataset indices, arg-max locations, scores and labels), built once after training and
stored beside the checkpoint as ``gallery.safetensors``. Explanations show these items as "this
looks like that"; the trainers write them, the explainers read them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from ..checks import check_images
from ..errors import InputError
from ..features import FeatureCache
from ..io import atomic_file, sha256_file
from .base import PrototypeOutput

GALLERY_FILE = "gallery.safetensors"
GALLERY_FORMAT = "1"


@dataclass
class Gallery:
    """The ``k`` training items with the highest score ``s_p`` for every prototype ``p``.

    ``indices (P, k)`` int64 dataset item indices, best first; ``locations (P, k)`` int64 flat
    arg-max of the item's map ``p`` in ``h * w``; ``scores (P, k)`` float32 ``s_p`` of the item;
    ``labels (P, k)`` int64 class of the item (-1 when built from bare features);
    ``feature_size`` the map's ``(h, w)``; ``num_items`` how many items were searched.
    """

    indices: torch.Tensor
    locations: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    feature_size: tuple[int, int]
    num_items: int

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def top(self, k: int) -> "Gallery":
        """The first ``min(k, self.k)`` columns (the ``k`` best items of every prototype)."""
        return Gallery(self.indices[:, :k], self.locations[:, :k], self.scores[:, :k], self.labels[:, :k],
                       self.feature_size, self.num_items)


def _head_device(head: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(head.parameters())
    return param.device, param.dtype


@torch.no_grad()
def build_gallery(head: nn.Module, features: torch.Tensor | FeatureCache, k: int = 5, batch_size: int = 256) -> Gallery:
    """Find, for every prototype, the ``k`` items of ``features`` with the highest score.

    ``features`` is a ``(N, C, h, w)`` tensor (item ``n`` has index ``n``) or a
    :class:`~sparsex.features.FeatureCache` (its ``indices`` and ``labels`` are used). Runs the
    head in batches of ``batch_size`` without gradients and keeps only a running top-k
    ``(P, k)``, never the maps. With fewer than ``k`` items the gallery has ``N`` columns.
    """
    if isinstance(features, FeatureCache):
        feats, item_index, item_labels = features.features, features.indices, features.labels
    else:
        feats = features
        if not isinstance(feats, torch.Tensor) or feats.dim() != 4:
            got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise InputError(f"gallery features must have shape (N, C, h, w), got {got}")
        item_index = torch.arange(feats.shape[0])
        item_labels = torch.full((feats.shape[0],), -1, dtype=torch.int64)
    n = feats.shape[0]
    if n == 0:
        raise InputError("gallery features are empty (no training items)")
    if k < 1 or batch_size < 1:
        raise InputError(f"gallery k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
    device, dtype = _head_device(head)
    best_scores = best_rows = best_locs = None
    for start in range(0, n, batch_size):
        batch = check_images(feats[start:start + batch_size].to(device, dtype), name="features")
        out: PrototypeOutput = head(batch)
        scores, locs = out.scores.T, out.locations.T  # (P, B)
        rows = torch.arange(start, start + batch.shape[0], device=device).expand_as(scores)
        if best_scores is not None:
            scores = torch.cat([best_scores, scores], dim=1)
            locs = torch.cat([best_locs, locs], dim=1)
            rows = torch.cat([best_rows, rows], dim=1)
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        best_scores = top.values
        best_locs, best_rows = locs.gather(1, top.indices), rows.gather(1, top.indices)
        feature_size = (out.maps.shape[2], out.maps.shape[3])
    best_rows = best_rows.cpu()
    return Gallery(item_index[best_rows].to(torch.int64), best_locs.cpu().to(torch.int64),
                   best_scores.cpu().float(), item_labels[best_rows].to(torch.int64), feature_size, n)


def _config_hash(folder: Path) -> str:
    config = folder / "config.json"
    return sha256_file(config) if config.is_file() else ""


def save_gallery(folder: str | os.PathLike, gallery: Gallery) -> Path:
    """Write ``gallery`` as ``folder/gallery.safetensors`` (atomically).

    When ``folder`` is a checkpoint, the hash of its ``config.json`` (which pins the model
    weights, backbone and data) is stored with it, so :func:`load_gallery` never returns the
    gallery of another model.
    """
    folder = Path(folder)
    path = folder / GALLERY_FILE
    tensors = {"indices": gallery.indices, "locations": gallery.locations, "scores": gallery.scores,
               "labels": gallery.labels}
    metadata = {"format": GALLERY_FORMAT, "feature_size": f"{gallery.feature_size[0]},{gallery.feature_size[1]}",
                "num_items": str(gallery.num_items), "config_sha256": _config_hash(folder)}
    data = save({name: t.contiguous().cpu() for name, t in tensors.items()}, metadata=metadata)
    with atomic_file(path, "wb") as f:
        f.write(data)
    return path


def load_gallery(folder: str | os.PathLike) -> Gallery | None:
    """Read ``folder/gallery.safetensors``. Returns ``None`` when there is none, when it is
    unreadable (with a warning) or when it was built for another checkpoint config (stale)."""
    folder = Path(folder)
    path = folder / GALLERY_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in ("indices", "locations", "scores", "labels")}
        h, w = (int(v) for v in meta["feature_size"].split(","))
        num_items = int(meta["num_items"])
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        warnings.warn(f"ignoring unreadable gallery {path} ({str(e).splitlines()[0]}); it will be rebuilt", stacklevel=2)
        return None
    if meta.get("format") != GALLERY_FORMAT or meta.get("config_sha256") != _config_hash(folder):
        return None
    return Gallery(tensors["indices"], tensors["locations"], tensors["scores"], tensors["labels"], (h, w), num_items)
