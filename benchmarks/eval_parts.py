"""The evaluation suite on the part world: the plain Lite0 classifier with integrated gradients and
Grad-CAM, and the self-explainable models (SIDE, ProtoS-ViT) with their own prototype evidence,
all on the same part-world test images, in one table; plus the protocol's cost.

    python benchmarks/eval_parts.py --out RESULT.json [--quick] [--cache DIR] [--resume]

- The classifier is the minimal-mask benchmark's: a linear probe on frozen Lite0 at 128 px,
  trained here (its run folder in ``<cache>/eval_parts_runs``; features cached in ``--cache``).
- SIDE and ProtoS-ViT are the runs of ``side_parts.py`` and ``protosvit_parts.py`` (Lite0 at
  224 px) found in ``<cache>/side_runs/side`` and ``<cache>/protosvit_runs/protosvit``; a missing
  one is trained here with sparsex's defaults on the cached features.
- Every model is evaluated by :func:`sparsex.evaluate.evaluate` on the first ``N`` (500) test
  images of its own part world (the same scenes; the classifier's rendered at 128 px); the
  deletion / insertion curves (21 forward passes each per image) on all of them for the 128-px
  classifier and on the first 100 for the 224-px prototype models (``<model>.auc_images``).
  ``--resume`` reuses a model's finished evaluation (same settings) from an interrupted run.
- Cost: the part protocols' forward passes and wall time (explanations excluded), and the time of
  one forward pass per model measured in the same run on a batch of test images, giving
  ``overhead_ratio = protocol time / sum_models(passes x time per pass)`` (1 means the protocols
  cost nothing beyond their forward passes: rendering, bookkeeping and scoring are free).
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import time

import torch
from _common import parse_run_args, run_folders, write_result

from sparsex.data import create_dataset
from sparsex.data.sampler import dataset_tensors
from sparsex.evaluate import EvaluateConfig, evaluate, write_combined_report
from sparsex.io import read_json
from sparsex.models.classifier import load_image_classifier
from sparsex.train.classifier import ClassifierTrainConfig, train_classifier
from sparsex.train.protosvit import ProtoSViTTrainConfig, train_protosvit
from sparsex.train.side import SIDETrainConfig, train_side

#: short row names for the benchmark keys
SHORT = {"integrated-gradients": "ig", "gradcam": "gradcam", "prototypes": "prototypes"}
KEYS = ("accuracy", "bi", "completeness", "correctness", "contrastivity", "deletion_auc", "insertion_auc")


@torch.no_grad()
def seconds_per_forward(model: torch.nn.Module, images: torch.Tensor, batch: int, repeats: int = 3) -> float:
    """Median time of one image's forward pass, in batches of ``batch`` (as the protocols run)."""
    model(images[:2])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(images[:batch])
        times.append((time.perf_counter() - start) / len(images[:batch]))
    return sorted(times)[len(times) // 2]


def main() -> None:
    args = parse_run_args(__doc__)
    runs = run_folders(args, "eval_parts")
    if args.quick:
        classifier = dict(data_options={"image_size": 64, "train_size": 96, "test_size": 24}, image_size=64, epochs=3)
        proto_data = {"image_size": 64, "train_size": 96, "test_size": 24}
        side_settings = dict(expanded_channels=16, pretrain_epochs=2, finetune_epochs=1, calibrate_epochs=1, prune_k=3)
        protosvit_settings = dict(num_prototypes=12, embed_dim=8, epochs=2, hoyer_warmup_epochs=1)
        limit, auc_limit, ig_steps, batch = 8, 4, 4, 16
        side_run = protosvit_run = None  # always train tiny ones
    else:
        classifier = dict(data_options={"image_size": 128, "train_size": 2400, "test_size": 500}, image_size=128, epochs=100)
        proto_data = {"train_size": 2400, "test_size": 480}
        side_settings = dict(expanded_channels=256, pretrain_epochs=10, finetune_epochs=10, calibrate_epochs=20)
        protosvit_settings = {}
        limit, auc_limit, ig_steps, batch = 500, 100, 16, 64
        side_run, protosvit_run = args.cache / "side_runs" / "side", args.cache / "protosvit_runs" / "protosvit"
    common = dict(data="parts", backbone="lite0", cache_dir=str(args.cache))
    train_classifier(ClassifierTrainConfig(**common, **classifier, mode="probe", lr=1e-2), runs / "lite0")
    if side_run is None or not (side_run / "checkpoint").is_dir():
        side_run = runs / "side"
        train_side(SIDETrainConfig(**common, data_options=proto_data, **side_settings), side_run)
    if protosvit_run is None or not (protosvit_run / "checkpoint").is_dir():
        protosvit_run = runs / "protosvit"
        train_protosvit(ProtoSViTTrainConfig(**common, data_options=proto_data, **protosvit_settings), protosvit_run)

    figures: dict = {"settings.images": limit, "settings.ig_steps": ig_steps, "settings.internal_batch_size": batch}
    results, protocol_s, expected_s, passes, wall_s = [], 0.0, 0.0, 0, 0.0
    # (row prefix, run, explainers, their settings, images for the deletion/insertion curves: all at
    # 128 px, auc_limit at 224 px where a forward pass costs 3x more)
    models = (("lite0", runs / "lite0", ["integrated-gradients", "gradcam"], {"integrated-gradients": {"n_steps": ig_steps}}, None),
              ("side", side_run, ["prototypes"], {}, auc_limit), ("protosvit", protosvit_run, ["prototypes"], {}, auc_limit))
    for name, run, explainers, settings, auc_images in models:
        model, checkpoint = load_image_classifier(run)
        options = {**checkpoint.config["data"].get("options", {}), "test_size": max(limit, 24)}
        config = EvaluateConfig(model=str(run), explainers=explainers, explainer_settings=settings, data_options=options,
                                limit=limit, auc_limit=auc_images, internal_batch_size=batch)
        evaluated = runs / f"eval-{name}"
        done = args.resume and (evaluated / "metrics.json").is_file()
        if done and EvaluateConfig.from_dict(read_json(evaluated / "config.json", "config")).to_dict() == config.to_dict():
            result = read_json(evaluated / "metrics.json", "evaluation")  # finished before an interruption
        else:
            result = evaluate(config, evaluated, overwrite=True)
        results.append(result)
        images = dataset_tensors(create_dataset("parts", split="test", **options), False, batch)[0]
        per_pass = seconds_per_forward(model, images, batch)
        protocol = result["protocol"]
        figures[f"{name}.auc_images"] = min(auc_images or limit, limit)
        figures[f"{name}.seconds_per_forward"] = per_pass
        figures[f"{name}.forward_passes"] = protocol["forward_passes"]
        figures[f"{name}.protocol_s"] = protocol["parts_protocol_s"]
        figures[f"{name}.explain_s"] = protocol["explain_s"]
        protocol_s += protocol["parts_protocol_s"]
        expected_s += per_pass * protocol["forward_passes"]
        passes += protocol["forward_passes"]
        wall_s += protocol["wall_s"]
        for row_name, row in result["rows"].items():
            explainer = row_name.split(".", 1)[1]
            prefix = f"{name}.{SHORT.get(explainer, explainer)}"
            for key in KEYS + ("consistency", "stability", "local_size"):
                if key in row:
                    figures[f"{prefix}.{key}"] = row[key]
    figures["protocol.forward_passes"] = passes
    figures["protocol.wall_s"] = protocol_s
    figures["protocol.forward_s_expected"] = expected_s
    figures["protocol.overhead_ratio"] = protocol_s / expected_s
    figures["evaluate.wall_s"] = wall_s
    report = write_combined_report(args.out.with_name(args.out.stem + "_report.html"),
                                   [runs / f"eval-{name}" for name, *_ in models],
                                   "eval_parts benchmark: part-world test split")
    figures["report"] = str(report)
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
