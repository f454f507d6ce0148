"""How hard a part world is: the test accuracy of a linear probe on frozen Lite0 features (global
average pooled, as ``protosvit_parts.py``'s probe), on the ``parts-fine`` preset and, for contrast,
on the default 24-class world with the same number of images per class.

    python benchmarks/parts_fine_probe.py --out RESULT.json [--quick] [--image-size 128] [--per-class 40] [--worlds 0]

Both worlds are rendered at ``--image-size`` with ``--per-class`` train images and a quarter as
many val and test images per class; the ImageNet-pretrained Lite0's features are cached in
``benchmarks/.cache``. The probe is trained with Adam for ``PROBE_EPOCHS`` epochs at each of
``PROBE_LRS``; the one with the best val accuracy is tested (``lr`` reports which). Over several
``--worlds`` (seeds) the figures are ``<world>.<figure>.mean`` / ``.sd`` / ``.worst``
(:func:`_common.over_worlds`).
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import time

import torch
import torch.nn.functional as F
from _common import CACHE, over_worlds, parse_args, world_options, write_result

from sparsex import create_dataset
from sparsex.backbones import create_backbone
from sparsex.features import extract_features
from sparsex.metrics import accuracy
from sparsex.models import create_model
from sparsex.partworld.scene import PRESETS
from sparsex.train.loop import train_epochs

PROBE_EPOCHS, PROBE_LRS, PROBE_BATCH = 100, (1e-3, 1e-2), 64
WORLDS = {"parts-fine": "parts-fine", "default": None}  # figure prefix -> preset


def probe_accuracy(options: dict, backbone, epochs: int) -> dict:
    """Val and test accuracy, and the learning rate, of the linear probe (of those trained at :data:`PROBE_LRS`) with
    the best val accuracy on the pooled features of ``options``' world."""
    pooled, labels = {}, {}
    for split in ("train", "val", "test"):
        cache, _ = extract_features(create_dataset("parts", split=split, **options), backbone, CACHE, progress=True)
        pooled[split], labels[split] = cache.features.mean(dim=(2, 3), keepdim=True), cache.labels
    results = []
    for lr in PROBE_LRS:
        torch.manual_seed(0)
        probe = create_model("linear-probe", in_channels=pooled["train"].shape[1], num_classes=int(labels["train"].max()) + 1)
        train_epochs(probe, lambda logits, y, _epoch: F.cross_entropy(logits, y), pooled["train"], labels["train"],
                     epochs, lr, PROBE_BATCH, seed=0, desc=f"linear probe lr {lr}")
        with torch.no_grad():
            results.append({"accuracy": accuracy(probe(pooled["test"]), labels["test"]),
                            "val_accuracy": accuracy(probe(pooled["val"]), labels["val"]), "lr": lr})
    return max(results, key=lambda r: r["val_accuracy"])


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--image-size", type=int, default=128, help="image side in pixels")
        parser.add_argument("--per-class", type=int, default=40, help="train images per class (val and test: a quarter)")
        parser.add_argument("--worlds", type=int, nargs="+", default=[0], help="world seeds")

    args = parse_args(__doc__, options)
    per_class, epochs = (4, 3) if args.quick else (args.per_class, PROBE_EPOCHS)
    backbone = create_backbone("lite0", pretrained=True)
    figures: dict = {"settings.image_size": args.image_size, "settings.train_per_class": per_class,
                     "settings.eval_per_class": max(1, per_class // 4), "settings.probe_epochs": epochs,
                     "settings.probe_lrs": list(PROBE_LRS), "settings.parts-fine": PRESETS["parts-fine"]}
    timings = {}
    for prefix, preset in WORLDS.items():
        classes = PRESETS[preset]["classes"] if preset else 24
        sizes = {"image_size": args.image_size, "train_size": classes * per_class,
                 "val_size": classes * max(1, per_class // 4), "test_size": classes * max(1, per_class // 4)}
        start = time.perf_counter()
        figures.update(over_worlds(lambda seed, clutter: probe_accuracy(world_options(seed, clutter, preset, sizes), backbone,
                                                                        epochs),
                                   args.worlds, [None], prefix=prefix))
        timings[prefix] = round(time.perf_counter() - start, 1)
    figures.update({f"time_s.{k}": v for k, v in timings.items()})
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
