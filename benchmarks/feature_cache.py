"""One epoch of a linear head on cached Lite0 features vs. the same epoch recomputing the backbone.

    python benchmarks/feature_cache.py --out RESULT.json [--quick]

Both epochs train the same linear probe (global average pooling, then a linear layer) on the
part-world train split with the same batches; the recomputed epoch renders each image and runs
the frozen backbone as it goes, the cached one reads the features extracted once beforehand.
Reports ``cache.epoch_s_cached``, ``cache.epoch_s_recomputed``, ``cache.speedup`` (their
ratio), the one-off extraction time and the time to open a cache hit.
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import tempfile
import time

import torch
from _common import parse_args, write_result
from torch import nn

from sparsex import create_dataset
from sparsex.backbones import create_backbone
from sparsex.features import extract_features

BATCH = 32


def train_epoch(head: nn.Module, batches, features_of) -> float:
    """One epoch of the probe; ``features_of(batch)`` yields ``(features, labels)``. Returns seconds."""
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    start = time.perf_counter()
    for batch in batches:
        features, labels = features_of(batch)
        loss = nn.functional.cross_entropy(head(features), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args(__doc__)
    n = 64 if args.quick else 960
    dataset = create_dataset("parts", split="train", train_size=n)
    backbone = create_backbone("lite0", pretrained=True)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).split(BATCH)

    def probe() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(backbone.info.channels, dataset.num_classes))

    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        cache, hit = extract_features(dataset, backbone, root, batch_size=BATCH)
        extract_s = time.perf_counter() - start
        assert not hit
        start = time.perf_counter()
        _, hit = extract_features(dataset, backbone, root, progress=False)
        hit_s = time.perf_counter() - start
        assert hit

        cached_s = train_epoch(probe(), order, lambda idx: (cache.features[idx], cache.labels[idx]))

        def recompute(idx: torch.Tensor):
            items = [dataset[int(i)] for i in idx]
            with torch.no_grad():
                features = backbone.extract(torch.stack([item["image"] for item in items]))
            return features, torch.tensor([item["label"] for item in items])

        recomputed_s = train_epoch(probe(), order, recompute)

    write_result(args.out, args.quick, {
        "cache.images": n,
        "cache.image_size": dataset.image_size[0],
        "cache.backbone": "lite0",
        "cache.extract_s": round(extract_s, 2),
        "cache.hit_open_s": round(hit_s, 3),
        "cache.epoch_s_cached": round(cached_s, 4),
        "cache.epoch_s_recomputed": round(recomputed_s, 2),
        "cache.speedup": round(recomputed_s / cached_s, 1),
    })


if __name__ == "__main__":
    main()
