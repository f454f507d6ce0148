"""The feature-decoder mask explainer (``MinimalMaskConfig(architecture="feature-decoder")``: a decoder
of the frozen classifier's own activations, Dabkowski & Gal 2017) against the U-Net mask explainer
(``architecture="unet"``) and integrated gradients (50 steps) on the Fashion-MNIST small CNN of
``benchmarks/minimal_mask.py``.

    python benchmarks/feature_decoder.py --out RESULT.json [--quick] [--resume] [--cache DIR]

The classifier is the one of ``<cache>/minimal_mask_runs/fmnist_classifier`` when that run has
finished (else one trained with the same settings in this benchmark's run folders). Both mask
explainers train at the same budget: the same ``TRAIN_LIMIT`` training images (a subsample of the
60k, to keep the run near 20 minutes on 2 CPU cores), epochs, batch size, learning rate and
objective weights, each calibrating its threshold and fallback areas on the first 200 training
images (``sparsex train minimal-mask``'s calibrate stage). A finished U-Net run of
``minimal_mask.py`` is reused when it trained at that budget for that classifier.

Measured on the first ``EVAL_N`` test images: for each explainer ``<clf>.<name>.area`` (mean mask
area), ``.sufficiency`` (top-1 kept on ``m x + (1 - m) blur(x)``), ``.deletion_auc`` (pixels
ranked by the mask logits), ``.sufficiency_at_10pct`` (the top 10% of the pixels kept),
``.images_per_s``, ``.parameters``; for integrated gradients ``.deletion_auc``,
``.sufficiency_at_10pct``, ``.images_per_s``; and ``<clf>.speedup.decoder_vs_ig`` /
``.unet_vs_ig``: the median over ``SPEED_ROUNDS`` rounds of the ratio of images/s, the two methods
timed back to back on the first ``SPEED_N`` images; ``<clf>.decoder.deletion_auc_minus_ig`` / ``_unet``: the
mean paired difference of the deletion AUCs over the same images, and ``..._se`` its standard
error. ``<clf>.unet.*`` are the figures
``minimal_mask.py`` reports as ``<clf>.mask.*``.
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import json
import statistics
import time
from pathlib import Path

import torch
from _common import parse_run_args, run_folders, write_result
from minimal_mask import BATCH, speedup_rounds, sufficiency_at_same_area, timed  # the same budget and timing as minimal_mask

from sparsex.checkpoint import load_checkpoint
from sparsex.explainers import create_explainer
from sparsex.explainers.minimal_mask import MinimalMask
from sparsex.metrics.faithfulness import deletion_auc, mask_area, sufficiency
from sparsex.models.classifier import load_classifier
from sparsex.train.classifier import ClassifierTrainConfig, train_classifier
from sparsex.train.minimal_mask import MinimalMaskTrainConfig, load_images, train_minimal_mask


def score(model, x: torch.Tensor, masks: torch.Tensor | None, ranking: torch.Tensor, images_per_s: float,
          prefix: str, figures: dict) -> torch.Tensor:
    """Mask area and sufficiency of ``masks`` (when given), deletion AUC and sufficiency of the top
    ``minimal_mask.SAME_AREA`` of ``ranking``, and images/s, under ``prefix``; returns the per-image deletion AUCs."""
    if masks is not None:
        figures[f"{prefix}.area"] = float(mask_area(masks).mean())
        figures[f"{prefix}.sufficiency"] = sufficiency(model, x, masks)
    per_image = deletion_auc(model, x, ranking)
    figures[f"{prefix}.deletion_auc"] = float(per_image.mean())
    figures[f"{prefix}.sufficiency_at_10pct"] = sufficiency_at_same_area(model, x, ranking)
    figures[f"{prefix}.images_per_s"] = round(images_per_s, 2)
    return per_image


def finished(run: Path) -> bool:
    return (run / "checkpoint" / "config.json").exists()


def main() -> None:
    args = parse_run_args(__doc__)
    runs = run_folders(args, "feature_decoder")
    shared = args.cache / ("minimal_mask_runs_quick" if args.quick else "minimal_mask_runs")
    if args.quick:
        classifier_cfg = dict(data="fashion-mnist", data_options={"limit": 256}, backbone="small-cnn", epochs=1)
        budget = dict(train_limit=64, test_limit=8, explainer={"epochs": 1, "calibrate": 32})
        widths, eval_n = {"unet": 4, "decoder": 8}, 8
    else:
        classifier_cfg = dict(data="fashion-mnist", backbone="small-cnn", epochs=3)  # minimal_mask.py's classifier
        # minimal_mask.py's explainer settings (4 epochs, the first soft, threshold 1.5 before calibration) on a subsample
        budget = dict(train_limit=15000, test_limit=200, explainer={"epochs": 4, "threshold": 1.5})
        widths, eval_n = {"unet": 16, "decoder": 32}, 500
    figures: dict = {"settings.batch": BATCH, "settings.train_limit": budget["train_limit"],
                     "settings.epochs": budget["explainer"]["epochs"], "settings.eval_images": eval_n,
                     "settings.width.unet": widths["unet"], "settings.width.decoder": widths["decoder"]}

    clf_dir = shared / "fmnist_classifier"
    figures["fmnist.classifier.reused"] = finished(clf_dir)
    if not finished(clf_dir):
        clf_dir = runs / "fmnist_classifier"
        start = time.perf_counter()
        train_classifier(ClassifierTrainConfig(**classifier_cfg), clf_dir)
        figures["time_s.fmnist.classifier"] = round(time.perf_counter() - start, 1)
    model, checkpoint = load_classifier(clf_dir)
    figures["fmnist.classifier.run"] = str(clf_dir)
    figures["fmnist.classifier.test_accuracy"] = json.loads((clf_dir / "metrics.json").read_text())["final"]["test_accuracy"]

    explainers = {}
    for name, architecture in (("unet", "unet"), ("decoder", "feature-decoder")):
        settings = {"model": str(clf_dir), **budget,
                    "explainer": {**budget["explainer"], "architecture": architecture, "width": widths[name]}}
        run = runs / f"fmnist_{name}"
        cached = shared / "fmnist_explainer"
        if name == "unet" and finished(cached):
            stored = load_checkpoint(cached).config
            same = (stored.get("train_limit"), stored.get("explainer", {}).get("epochs")) == (
                budget["train_limit"], budget["explainer"]["epochs"])
            if same and Path(stored.get("model", "")).resolve() == clf_dir.resolve():
                run = cached
        figures[f"fmnist.{name}.run"] = str(run)
        start = time.perf_counter()
        train_minimal_mask(MinimalMaskTrainConfig.from_dict(settings), run)
        figures[f"time_s.fmnist.{name}"] = round(time.perf_counter() - start, 1)
        explainers[name] = MinimalMask.load(run, model)
        figures[f"fmnist.{name}.parameters"] = sum(p.numel() for p in explainers[name].net.parameters())
        figures[f"fmnist.{name}.threshold"] = explainers[name].config.threshold
        figures[f"fmnist.{name}.fallback_areas"] = explainers[name].config.fallback_areas

    data = checkpoint.config["data"]
    x = load_images(data["name"], "test", data["root"], data["options"] or {}, eval_n)
    figures["fmnist.eval_images"] = len(x)
    deletion = {}
    for name, explainer in explainers.items():
        masks, images_per_s = timed(explainer.attribute, x)
        ranking = torch.cat([explainer.mask_logits(chunk) for chunk in x.split(BATCH)])
        deletion[name] = score(model, x, masks, ranking, images_per_s, f"fmnist.{name}", figures)
    ig = create_explainer("integrated-gradients", model, n_steps=50)
    maps, images_per_s = timed(ig.attribute, x)
    deletion["ig"] = score(model, x, None, maps, images_per_s, "fmnist.ig", figures)
    for name, explainer in explainers.items():
        rounds = speedup_rounds(explainer.attribute, ig.attribute, x)
        figures[f"fmnist.speedup.{name}_vs_ig_rounds"] = rounds
        figures[f"fmnist.speedup.{name}_vs_ig"] = statistics.median(rounds)
    for other in ("ig", "unet"):  # paired over the same images: the difference and its standard error sd / sqrt(n)
        difference = deletion["decoder"] - deletion[other]
        figures[f"fmnist.decoder.deletion_auc_minus_{other}"] = float(difference.mean())
        figures[f"fmnist.decoder.deletion_auc_minus_{other}_se"] = float(difference.std() / len(difference) ** 0.5)
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
