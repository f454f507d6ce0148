"""ProtoS-ViT vs. a dense linear probe on the same cached Lite0 features of the part world, plus the
Hoyer-Square ablation (weight 0 vs. the default).

    python benchmarks/protosvit_parts.py --out RESULT.json [--quick] [--resume]

Features are cached in ``--cache`` (default ``benchmarks/.cache``, shared with side_parts.py); run
folders go to ``<cache>/protosvit_runs[_quick]``, started afresh unless ``--resume``. The
ProtoS-ViT settings are the library defaults (chosen on the val split, reported here too). Also
writes one explanation figure for a test image next to RESULT.json.
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import time

import torch
import torch.nn.functional as F
from _common import explanation_figure, parse_run_args, run_folders, write_result

from sparsex.backbones import create_backbone
from sparsex.metrics import accuracy
from sparsex.models import create_model, load_model
from sparsex.train.heads import cached_split, evaluate_head
from sparsex.train.loop import train_epochs
from sparsex.train.protosvit import ProtoSViTTrainConfig, train_protosvit

PROBE_EPOCHS, PROBE_LR = 100, 1e-2  # the best of 30/100 epochs x lr 1e-3/1e-2 on the val split


def main() -> None:
    args = parse_run_args(__doc__)
    if args.quick:
        data = {"train_size": 96, "test_size": 48, "val_size": 48}
        settings = dict(num_prototypes=24, embed_dim=32, epochs=3, hoyer_warmup_epochs=1)
        probe_epochs = 3
    else:
        data = {"train_size": 2400, "test_size": 480}
        settings, probe_epochs = {}, PROBE_EPOCHS
    base = dict(data="parts", data_options=data, backbone="lite0", cache_dir=str(args.cache), **settings)
    defaults = ProtoSViTTrainConfig(**base)
    figures: dict = {"data.train_size": data["train_size"], "data.test_size": data["test_size"],
                     **{f"settings.{k}": getattr(defaults, k) for k in ("num_prototypes", "embed_dim", "temperature",
                        "importance_threshold", "epochs", "lr", "tanh_weight", "hoyer_weight", "hoyer_warmup_epochs")},
                     "settings.probe_epochs": probe_epochs, "settings.probe_lr": PROBE_LR}
    runs = run_folders(args, "protosvit")
    timings = {}

    backbone = create_backbone(**defaults.backbone_settings())
    splits = {split: cached_split(defaults, split, backbone, args.cache, progress=True) for split in ("train", "val", "test")}

    start = time.perf_counter()
    torch.manual_seed(0)
    train = splits["train"]
    pooled = {split: cache.features.mean(dim=(2, 3), keepdim=True) for split, cache in splits.items()}  # the probe pools first
    probe = create_model("linear-probe", in_channels=train.features.shape[1], num_classes=train.num_classes)
    train_epochs(probe, lambda logits, y, _epoch: F.cross_entropy(logits, y), pooled["train"], train.labels,
                 probe_epochs, PROBE_LR, defaults.batch_size, seed=0, desc="linear probe")
    with torch.no_grad():
        for split in ("val", "test"):
            key = "probe.accuracy" if split == "test" else "probe.val_accuracy"
            figures[key] = accuracy(probe(pooled[split]), splits[split].labels)
    timings["probe"] = round(time.perf_counter() - start, 1)

    def run(name: str, **overrides):
        start = time.perf_counter()
        result = train_protosvit(ProtoSViTTrainConfig(**{**base, **overrides}), runs / name)
        timings[name] = round(time.perf_counter() - start, 1)
        head, _ = load_model(runs / name / "checkpoint", family="protosvit")
        val = evaluate_head(head, splits["val"], defaults.eps)
        return result, val

    protosvit, protosvit_val = run("protosvit")
    hs0, _ = run("hs0", hoyer_weight=0.0)

    figures.update(explanation_figure(runs, "protosvit", data, args.out, "protosvit"))

    for key in ("accuracy", "local_size", "local_size_all", "global_size", "zero_weight_fraction"):
        figures[f"protosvit.{key}"] = protosvit[key]
    for key in ("accuracy", "local_size", "global_size"):
        figures[f"protosvit.val_{key}"] = protosvit_val[key]
    figures["protosvit.pruned_connections"] = protosvit["pruned_connections"]
    for key in ("accuracy", "local_size", "local_size_all", "global_size"):
        figures[f"ablation.hs0.{key}"] = hs0[key]
    figures["accuracy_gap.protosvit_minus_probe"] = round(protosvit["accuracy"] - figures["probe.accuracy"], 4)
    figures["resumed"] = args.resume  # with --resume, time_s.* cover only the stages run this time
    figures.update({f"time_s.{k}": v for k, v in timings.items()})
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
