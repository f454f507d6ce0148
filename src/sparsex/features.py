"""Feature cache: run a frozen backbone over a dataset split once, keep the features on disk.

A cache entry is a folder ``<root>/<dataset>-<split>-<backbone>-<key hash>/`` holding

- ``key.json``: everything that changes the features (dataset fingerprint, backbone info and a
  SHA-256 of its weights, dtype, format version); its hash names the folder, so a change of any
  of them gives a new entry and the stale one is never read;
- ``shard-NNNNN.safetensors``: ``features (n, C, h, w)``, ``labels (n,)``, ``indices (n,)`` for a
  fixed range of items, each written atomically;
- ``manifest.json``: written last, atomically, with the SHA-256 of every shard (checked on load:
  a corrupt or modified shard is refused); an entry without it is incomplete.

An interrupted extraction resumes from the first missing shard; an incomplete entry is never
used as a cache hit.

Under torchrun the ranks extract in parallel: shard ``i`` goes to rank ``i mod N``; when every
rank is done, rank 0 checks that every shard is there and writes the manifest
(:mod:`sparsex.distributed`). The cache folder must be on a file system all ranks see.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from . import distributed
from .backbones import Backbone
from .data.base import ImageDataset
from .errors import DataError, SparsexError
from .inference import DEFAULT_BATCH
from .io import atomic_file, read_json, sha256_file, sha256_json, write_json
from .progress import progress_bar

CACHE_FORMAT = 1
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class FeatureCache(torch.utils.data.Dataset):
    """Cached features of one dataset split; items are ``{"features", "label", "index"}``."""

    path: Path
    key: dict[str, Any]
    features: torch.Tensor  # (N, C, h, w)
    labels: torch.Tensor  # (N,) int64
    indices: torch.Tensor  # (N,) int64, the item's index in the dataset split
    classes: list[str]

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.features[i], "label": int(self.labels[i]), "index": int(self.indices[i])}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureCache":
        """Open a complete cache entry (one with ``manifest.json``)."""
        path = Path(path)
        manifest_file = path / "manifest.json"
        if not manifest_file.is_file():
            raise DataError(f"feature cache {path} is incomplete (no manifest.json); run the extraction again to resume it")
        manifest = read_json(manifest_file, "feature cache manifest")
        key = read_json(path / "key.json", "feature cache key")
        for name, digest in (manifest.get("sha256") or {}).items():
            if sha256_file(path / name) != digest:
                raise DataError(f"feature cache shard {path / name} does not match the hash in its manifest (corrupt or "
                                f"modified); remove {path} to extract it again")
        parts = [_read_shard(path / name) for name in manifest["shards"]]
        features = torch.cat([p["features"] for p in parts]) if parts else torch.empty(0)
        if features.shape[0] != manifest["num_items"]:
            raise DataError(f"feature cache {path} holds {features.shape[0]} items, manifest says {manifest['num_items']}")
        indices = torch.cat([p["indices"] for p in parts]) if parts else torch.empty(0, dtype=torch.long)
        if not torch.equal(indices, torch.arange(len(indices))):
            raise DataError(f"feature cache {path}: its shards do not cover items 0..{len(indices) - 1} in order; "
                            f"remove the folder to extract it again")
        return cls(path, key, features, torch.cat([p["labels"] for p in parts]), indices, manifest["classes"])


def _read_shard(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"feature cache shard {file} is corrupt ({str(e).splitlines()[0]})") from None


def cache_key(dataset: ImageDataset, backbone: Backbone, dtype: str = "float32") -> dict[str, Any]:
    """Everything that changes the cached features, as a JSON dict (normalised through JSON so it
    compares equal to the ``key.json`` it is written to)."""
    return json.loads(json.dumps({
        "format": CACHE_FORMAT,
        "dataset": dataset.fingerprint(),
        "backbone": backbone.info.to_dict(),
        "weights_sha256": backbone.weights_sha256(),
        "dtype": dtype,
    }))


def cache_dir(root: str | os.PathLike, dataset: ImageDataset, backbone: Backbone, key: dict[str, Any]) -> Path:
    return Path(root) / f"{dataset.name}-{dataset.split}-{backbone.info.name}-{sha256_json(key)[:12]}"


def _collate(items: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) > 1:
        raise DataError(f"images in one batch have different sizes {sorted(shapes)[:2]}; set the dataset's image_size")
    return torch.stack([item["image"] for item in items]), torch.tensor([item["label"] for item in items])


def extract_features(dataset: ImageDataset, backbone: Backbone, root: str | os.PathLike, batch_size: int = DEFAULT_BATCH,
                     dtype: str = "float32", device: str | torch.device = "cpu", num_workers: int = 0,
                     shard_size: int = 1024, progress: bool = True) -> tuple[FeatureCache, bool]:
    """Return the cached features of ``dataset`` under ``backbone``, extracting what is missing.

    Returns ``(cache, hit)``: ``hit`` is True when a complete entry with the same key existed.
    Under torchrun every rank calls this; each extracts its share of the missing shards.
    """
    if dtype not in DTYPES:
        raise SparsexError(f"unknown feature dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if batch_size < 1 or shard_size < 1:
        raise SparsexError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    distributed.init(device)
    key = cache_key(dataset, backbone, dtype)
    path = cache_dir(root, dataset, backbone, key)
    if distributed.from_main(lambda: (path / "manifest.json").is_file()):
        return FeatureCache.load(path), True
    path.mkdir(parents=True, exist_ok=True)
    key_file = path / "key.json"
    if key_file.is_file() and read_json(key_file, "feature cache key") != key:
        raise DataError(f"feature cache {path} holds another key (hash collision or edited key.json); remove the folder")
    if distributed.is_main():
        write_json(key_file, key)

    n = len(dataset)
    starts = list(range(0, n, shard_size))
    shard_names = [f"shard-{i:05d}.safetensors" for i in range(len(starts))]
    mine = distributed.shard_indices(list(zip(starts, shard_names)))
    todo = [(s, name) for s, name in mine if not (path / name).is_file()]
    total = sum(min(shard_size, n - s) for s, _ in mine)
    backbone = backbone.to(device).eval()
    bar = progress_bar(total=total, initial=total - sum(min(shard_size, n - s) for s, _ in todo),
               desc=f"features {dataset.name}/{dataset.split} @ {backbone.info.name}", unit="img",
               disable=not (progress and distributed.is_main()))
    with torch.inference_mode():
        for start, name in todo:
            indices = list(range(start, min(start + shard_size, n)))
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                                 num_workers=num_workers, collate_fn=_collate)
            feats, labels = [], []
            for images, batch_labels in loader:
                feats.append(backbone.extract(images.to(device)).to("cpu", DTYPES[dtype]))
                labels.append(batch_labels)
                bar.update(len(batch_labels))
            with atomic_file(path / name, "wb") as f:
                f.write(save({"features": torch.cat(feats).contiguous(), "labels": torch.cat(labels),
                              "indices": torch.tensor(indices, dtype=torch.int64)}))
    bar.close()
    distributed.barrier()
    distributed.main_only(_write_manifest, path, n, shard_names, list(dataset.classes))
    return FeatureCache.load(path), False


def _write_manifest(path: Path, n: int, shard_names: list[str], classes: list[str]) -> None:
    """Mark the entry complete, after checking that every shard is there (under torchrun other
    ranks wrote some; one that is missing means the cache folder is not shared between them)."""
    missing = [name for name in shard_names if not (path / name).is_file()]
    if missing:
        raise DataError(f"feature cache {path} lacks {missing[0]} after extraction (with several processes "
                        f"the cache folder must be on a file system they all see)")
    write_json(path / "manifest.json", {"num_items": n, "shards": shard_names, "classes": classes,
                                        "sha256": {name: sha256_file(path / name) for name in shard_names}})

