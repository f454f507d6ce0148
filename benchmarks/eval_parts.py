"""The evaluation suite on the part world: the plain Lite0 classifier with integrated gradients and
Grad-CAM, and the self-explainable models (SIDE, ProtoS-ViT) with their own prototype evidence,
all on the same part-world test images, in one table; plus the protocol's cost.

    python benchmarks/eval_parts.py --out RESULT.json [--quick] [--cache DIR] [--resume] [--worlds 0 1 2] [--clutter 3 6]

- The classifier is the minimal-mask benchmark's: a linear probe on frozen Lite0 at 128 px,
  trained here (its run folder in ``<cache>/eval_parts_runs``; features cached in ``--cache``).
- SIDE and ProtoS-ViT are the runs of ``side_parts.py`` and ``protosvit_parts.py`` (Lite0 at
  224 px) found in ``<cache>/side_runs/side`` and ``<cache>/protosvit_runs/protosvit``; a missing
  one is trained here with sparsex's defaults on the cached features.
- Every model is evaluated by :func:`sparsex.evaluate.evaluate` on its own part world's test
  images: the classifier on the first ``N`` (500; rendered at 128 px), each prototype model on
  the whole test split of its run (480), so its sizes are measured on the images its trainer
  measured them on (``<model>.prototypes.local_size`` equals ``<model>.run.local_size``, the
  run's ``metrics.json``, which ``protosvit_parts.py`` prints). The deletion / insertion curves
  (21 forward passes each per image) run on all of them for the 128-px classifier and on the
  first 100 for the 224-px prototype models (``<model>.auc_images``).
- The prototype rows print both size definitions (``local_size``: predicted class, sparsex;
  ``local_size_true``: true class, ProtoS-ViT; ``global_size`` / ``global_size_used``) and the
  stability's noise (``stability.noise_space``, ``stability.sigma``, ``stability.sigma_pixels``:
  the same noise in ``[0, 1]`` pixel units, ``stability.noise_bound``) and average
  (``stability.average``).
  ``--resume`` reuses a model's finished evaluation (same settings) from an interrupted run.
- Cost: the part protocols' forward passes and wall time (explanations excluded), timed inside each
  evaluation: ``overhead_ratio = protocol time / the protocols' forward time`` (1 means the protocols
  cost nothing beyond their forward passes: rendering, bookkeeping and scoring are free; both timed in
  the same passes, so the ratio holds under load). Also the time of one forward pass per model measured
  separately on a batch of test images, giving ``forward_ratio = the protocols' forward time /
  sum_models(passes x time per pass)`` (above 1: the protocols' passes run slower than plain batched ones;
  timed at another moment, so read it on an idle machine).
- Worlds: every world of ``--worlds x --clutter`` is evaluated with its own models (its SIDE and
  ProtoS-ViT runs found in ``side_parts.py`` / ``protosvit_parts.py``'s folders of that world,
  ``_common.world_runs``); each figure is reported as ``.mean`` / ``.sd`` / ``.worst`` / ``.values``
  over the worlds (``_common.over_worlds``), and, for a single world, also under its own key. The
  part protocols read the world's own class table, so ``--preset parts-fine`` is evaluated too
  (absent slots: ``sparsex.partworld.protocols``).
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import time

import torch
from _common import add_world_options, over_worlds, parse_run_args, run_folders, world_options, world_runs, write_result

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
#: a prototype row's own keys: both size definitions (sparsex's, ProtoS-ViT's), consistency, stability
PROTOTYPE_KEYS = ("consistency", "stability", "local_size", "local_size_true", "global_size", "global_size_used")


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
    args = parse_run_args(__doc__, add_world_options)
    all_runs = run_folders(args, "eval_parts")

    def run_one(seed: int, clutter: int | None) -> dict:
        """Every figure of one world."""
        runs = world_runs(all_runs, seed, clutter, args.preset)

        def in_world(options: dict) -> dict:
            return world_options(seed, clutter, args.preset, options)

        if args.quick:
            classifier = dict(data_options=in_world({"image_size": 64, "train_size": 96, "test_size": 24}), image_size=64,
                              epochs=3)
            proto_data = in_world({"image_size": 64, "train_size": 96, "test_size": 24})
            side_settings = dict(expanded_channels=16, pretrain_epochs=2, finetune_epochs=1, calibrate_epochs=1, prune_k=3)
            protosvit_settings = dict(num_prototypes=12, embed_dim=8, epochs=2, hoyer_warmup_epochs=1)
            limit, auc_limit, ig_steps, batch = 8, 4, 4, 16
            side_run = protosvit_run = None  # always train tiny ones
        else:
            classifier = dict(data_options=in_world({"image_size": 128, "train_size": 2400, "test_size": 500}), image_size=128,
                              epochs=100)
            proto_data = in_world({"train_size": 2400, "test_size": 480})
            side_settings = dict(expanded_channels=256, pretrain_epochs=10, finetune_epochs=10, calibrate_epochs=20)
            protosvit_settings = {}
            limit, auc_limit, ig_steps, batch = 500, 100, 16, 64
            side_run = world_runs(args.cache / "side_runs", seed, clutter, args.preset) / "side"
            protosvit_run = world_runs(args.cache / "protosvit_runs", seed, clutter, args.preset) / "protosvit"
        common = dict(data="parts", backbone="lite0", cache_dir=str(args.cache))
        train_classifier(ClassifierTrainConfig(**common, **classifier, mode="probe", lr=1e-2), runs / "lite0")
        if side_run is None or not (side_run / "checkpoint").is_dir():
            side_run = runs / "side"
            train_side(SIDETrainConfig(**common, data_options=proto_data, **side_settings), side_run)
        if protosvit_run is None or not (protosvit_run / "checkpoint").is_dir():
            protosvit_run = runs / "protosvit"
            train_protosvit(ProtoSViTTrainConfig(**common, data_options=proto_data, **protosvit_settings), protosvit_run)

        figures: dict = {"settings.images": limit, "settings.ig_steps": ig_steps, "settings.internal_batch_size": batch}
        results, protocol_s, forward_s, expected_s, passes, wall_s = [], 0.0, 0.0, 0.0, 0, 0.0
        # (row prefix, run, explainers, their settings, images for the deletion/insertion curves: all at
        # 128 px, auc_limit at 224 px where a forward pass costs 3x more)
        models = (("lite0", runs / "lite0", ["integrated-gradients", "gradcam"],
                   {"integrated-gradients": {"n_steps": ig_steps}}, None),
                  ("side", side_run, ["prototypes"], {}, auc_limit), ("protosvit", protosvit_run, ["prototypes"], {}, auc_limit))
        for name, run, explainers, settings, auc_images in models:
            model, checkpoint = load_image_classifier(run)
            run_options = checkpoint.config["data"].get("options", {})
            # a prototype model on its run's whole test split (its trainer's images); the classifier on the first `limit`
            images_evaluated = run_options["test_size"] if name != "lite0" else limit
            options = {**run_options, "test_size": max(images_evaluated, 24)}
            config = EvaluateConfig(model=str(run), explainers=explainers, explainer_settings=settings, data_options=options,
                                    limit=images_evaluated, auc_limit=auc_images, internal_batch_size=batch)
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
            figures[f"{name}.images"] = result["images"]
            figures[f"{name}.auc_images"] = min(auc_images or result["images"], result["images"])
            figures[f"{name}.seconds_per_forward"] = per_pass
            figures[f"{name}.forward_passes"] = protocol["forward_passes"]
            figures[f"{name}.protocol_s"] = protocol["parts_protocol_s"]
            figures[f"{name}.explain_s"] = protocol["explain_s"]
            protocol_s += protocol["parts_protocol_s"]
            forward_s += protocol["forward_s"]
            expected_s += per_pass * protocol["forward_passes"]
            passes += protocol["forward_passes"]
            wall_s += protocol["wall_s"]
            for row_name, row in result["rows"].items():
                explainer = row_name.split(".", 1)[1]
                prefix = f"{name}.{SHORT.get(explainer, explainer)}"
                for key in KEYS + PROTOTYPE_KEYS:
                    if key in row:
                        figures[f"{prefix}.{key}"] = row[key]
            if "prototype_settings" in result:
                trained = read_json(run / "metrics.json", "run metrics")["final"]  # what the trainer measured
                figures.update({f"{name}.run.{key}": trained[key] for key in ("local_size", "local_size_true") if key in trained})
                figures.update({f"stability.{key}": value for key, value in result["prototype_settings"]["stability"].items()})
        figures["protocol.forward_passes"] = passes
        figures["protocol.wall_s"] = protocol_s
        figures["protocol.forward_s"] = forward_s
        figures["protocol.overhead_ratio"] = protocol_s / forward_s
        figures["protocol.forward_s_expected"] = expected_s
        figures["protocol.forward_ratio"] = forward_s / expected_s
        figures["evaluate.wall_s"] = wall_s
        tag = "" if runs == all_runs else f"_{runs.name}"
        report = write_combined_report(args.out.with_name(f"{args.out.stem}{tag}_report.html"),
                                       [runs / f"eval-{name}" for name, *_ in models],
                                       "eval_parts benchmark: part-world test split")
        figures["report"] = str(report)
        return figures

    write_result(args.out, args.quick, over_worlds(run_one, args.worlds, args.clutter))


if __name__ == "__main__":
    main()
