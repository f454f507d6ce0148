"""Minimal masks (amortised, activation matching) vs. captum's attributions and the per-image
optimisation baseline, on two classifiers: a small CNN trained on Fashion-MNIST and a linear probe
on frozen Lite0 features of the part world (128 px). Two amortised explainers, trained at the same
budget (images, epochs, objective, width ``WIDTH``): the U-Net on the pixels (``<clf>.mask.*``) and the
feature decoder of the classifier's own activations (``architecture="feature-decoder"``,
``<clf>.decoder.*``), and the same decoder reading the predicted logit's gradient map as well
(``decoder_gradient=True``, ``<clf>.gradient_decoder.*``). Plus one circuit readout per classifier.

    python benchmarks/minimal_mask.py --out RESULT.json [--quick] [--resume] [--only fmnist|parts] [--train-only] \
        [--worlds 0 1 2] [--clutter 3 6] [--preset parts-fine]

Everything is measured on the same test images in one run: mask area, sufficiency (top-1 kept on
``m x + (1 - m) blur(x)``; also for every method's top 10% of the pixels, and on the part world
for the true explanations: the parts, the whole creature), deletion AUC (pixels ranked by the
attribution; the mask explainers rank by their mask logits), images/s of each method at the same
batch size, and the speed-ups: vs. integrated gradients the median of ``SPEED_ROUNDS`` rounds
that time the two back to back (:func:`speedup_rounds`; ``<clf>.speedup.vs_ig`` the U-Net's,
``.decoder_vs_ig`` and ``.gradient_decoder_vs_ig`` the decoders'), vs. the per-image baseline the
ratio of the two passes' images/s. ``<clf>.decoder.deletion_auc_minus_ig`` / ``_minus_mask`` (and
the same for ``gradient_decoder``): the mean paired difference of the deletion AUCs over the same
images, ``..._se`` its standard error; ``<clf>.best_amortised`` the one of the three (``mask``,
``decoder``, ``gradient_decoder``) with the lower deletion AUC. Each mask explainer's logit
threshold and fallback areas are the ones its training run calibrated on the first 200 training
images (its ``calibrate`` stage: :meth:`MinimalMask.calibrate_threshold`, the smallest masks within
1 point of the best sufficiency, then :meth:`MinimalMask.prune_fallback_areas`, the areas that
rescue at least 1% of those images, and the largest). The per-image baseline is slow, so it runs on
the first ``perimage_n`` evaluation images (32); the mask explainers' deletion AUCs on that subset
are reported beside it. Run folders (classifiers, explainers) go to
``<cache>/minimal_mask_runs[_quick]``, started afresh unless ``--resume``.

The part-world half runs on every world of ``--worlds x --clutter`` (of ``--preset``), each in its
own run folders (``_common.world_runs``); its figures are reported as ``.mean`` / ``.sd`` /
``.worst`` / ``.values`` over the worlds (``_common.over_worlds``), and, for a single world, also
under their own keys. With ``--resume`` a world measured before is not measured again: its figures are
kept in its run folder (``figures.json``, written when its measurement finished; delete it to measure
the world again), so the worlds of a grid can be measured one at a time (or side by side, one
process each) and aggregated by a last run over the whole grid. The Fashion-MNIST half runs once.
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import statistics
import time

import torch
from _common import add_world_options, over_worlds, parse_run_args, run_folders, world_options, world_runs, write_result

from sparsex.data import create_dataset
from sparsex.explainers import create_explainer
from sparsex.explainers.circuit import readout
from sparsex.explainers.minimal_mask import MinimalMask, PerImageMask, nested_top_masks
from sparsex.io import read_json, write_json
from sparsex.metrics.faithfulness import deletion_auc, mask_area, sufficiency
from sparsex.models.classifier import load_classifier
from sparsex.train.classifier import ClassifierTrainConfig, train_classifier
from sparsex.train.minimal_mask import MinimalMaskTrainConfig, load_images, train_minimal_mask
from sparsex.viz.circuit import circuit_figure

BATCH = 32  # images per attribute() call, the same for every method
SPEED_ROUNDS, SPEED_N = 3, 96  # the speed-up vs. integrated gradients: rounds of back-to-back timings on the first images
SAME_AREA = 0.1  # every ranking's top 10% of the pixels, kept on the blurred image: sufficiency at the area
WIDTH = 16  # both mask networks' width (the library default); a wider decoder's full-resolution blocks cost more than Lite0


def sufficiency_at_same_area(model, x: torch.Tensor, ranking: torch.Tensor) -> float:
    """Sufficiency of the mask "top ``SAME_AREA`` of the pixels by ``ranking``": how well a method's
    ranking finds a small region that keeps the label, at the same area for every method."""
    return sufficiency(model, x, nested_top_masks(ranking, [SAME_AREA])[:, 0])


def true_explanations(data: dict, n: int) -> dict[str, torch.Tensor]:
    """The part world's known explanations of its first ``n`` test images, ``(n, 1, H, W)`` 0/1: the
    six parts, and the whole creature (body and parts)."""
    dataset = create_dataset(data["name"], split="test", root=data["root"], **(data["options"] or {}))
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    parts = torch.stack([item["part_masks"].any(dim=0) for item in items])[:, None]
    creature = parts | torch.stack([item["body_mask"] for item in items])[:, None]
    return {"parts": parts.float(), "creature": creature.float()}


def timed(fn, x: torch.Tensor, warm_up: bool = True) -> tuple[torch.Tensor, float]:
    """``fn`` over ``x`` in batches of ``BATCH``; returns the concatenated output and images/s.
    With ``warm_up`` one batch runs first, untimed (thread pools and kernel caches start on first
    use); every method but the per-image baseline gets it (its many steps per batch dwarf a
    start-up cost, and a warm-up batch would double its run time)."""
    if warm_up:
        fn(x[:BATCH])
    start = time.perf_counter()
    out = torch.cat([fn(chunk) for chunk in x.split(BATCH)])
    return out, len(x) / (time.perf_counter() - start)


def rate(fn, x: torch.Tensor, min_seconds: float = 1.0) -> float:
    """Images/s of ``fn`` over ``x`` in batches of ``BATCH``, whole passes repeated until
    ``min_seconds`` have passed (a fast method is not timed on a few milliseconds)."""
    images, start = 0, time.perf_counter()
    while True:
        for chunk in x.split(BATCH):
            fn(chunk)
        images += len(x)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return images / elapsed


def speedup_rounds(fast: dict, slow, x: torch.Tensor) -> dict[str, list[float]]:
    """For each of the ``fast`` methods (name -> function), ``rate(fast) / rate(slow)`` in each of
    ``SPEED_ROUNDS`` rounds, all timed back to back on the first ``SPEED_N`` images of ``x`` after
    one warm-up batch each (one pass of the slow method per round serves every fast one). A run's
    sections are minutes apart and the machine's speed drifts (integrated gradients measured 37.6
    images/s in one run and 48.1 in the next), so the ratio of two rates timed far apart is noisier
    than either; the median of the rounds is the speed-up."""
    x = x[:SPEED_N]
    for fn in (*fast.values(), slow):
        fn(x[:BATCH])
    rounds: dict[str, list[float]] = {name: [] for name in fast}
    for _ in range(SPEED_ROUNDS):
        rates = {name: rate(fn, x) for name, fn in fast.items()}
        slow_rate = rate(slow, x)
        for name, fast_rate in rates.items():
            rounds[name].append(round(fast_rate / slow_rate, 1))
    return rounds


def score_explainer(explainer: MinimalMask, model, x: torch.Tensor, prefix: str,
                    figures: dict) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Score ``explainer`` (at the threshold and fallback areas its training calibrated) on ``x``:
    ``<prefix>.threshold``, ``.fallback_areas``, ``.parameters``, ``.area``, ``.sufficiency``,
    ``.deletion_auc`` (pixels ranked by the mask logits), ``.sufficiency_at_10pct`` and
    ``.images_per_s`` go to ``figures``. Returns the masks, the ranking, the images/s and the
    per-image deletion AUCs."""
    figures[f"{prefix}.threshold"] = explainer.config.threshold
    figures[f"{prefix}.fallback_areas"] = explainer.config.fallback_areas
    figures[f"{prefix}.parameters"] = sum(p.numel() for p in explainer.net.parameters())
    masks, rate = timed(explainer.attribute, x)
    ranking = torch.cat([explainer.mask_logits(chunk) for chunk in x.split(BATCH)])  # z ranks the pixels
    per_image = deletion_auc(model, x, ranking)
    figures[f"{prefix}.area"] = float(mask_area(masks).mean())
    figures[f"{prefix}.sufficiency"] = sufficiency(model, x, masks)
    figures[f"{prefix}.deletion_auc"] = float(per_image.mean())
    figures[f"{prefix}.sufficiency_at_10pct"] = sufficiency_at_same_area(model, x, ranking)
    figures[f"{prefix}.images_per_s"] = round(rate, 2)
    return masks, ranking, rate, per_image


def paired_difference(a: torch.Tensor, b: torch.Tensor, key: str, figures: dict) -> None:
    """``key``: the mean of the paired differences ``a - b`` (per-image figures of the same images),
    ``key_se``: its standard error ``sd / sqrt(n)``."""
    difference = a - b
    figures[key] = float(difference.mean())
    figures[f"{key}_se"] = float(difference.std() / len(difference) ** 0.5)


def measure(name: str, classifier_cfg: dict, explainer_cfg: dict, eval_n: int, perimage_n: int, perimage_steps: int,
            occlusion: dict, runs, results_dir, figures: dict, train_only: bool = False,
            ablations: dict[str, dict] | None = None, figure_tag: str = "") -> None:
    """Train (or resume) the classifier and the mask explainers of ``name`` (the U-Net, the feature
    decoder), then measure everything; ``ablations`` maps a name to U-Net settings that replace the
    main run's (an explainer trained for each, measured beside the main one: area, sufficiency,
    deletion AUC, images/s); ``figure_tag`` is appended to the circuit figure's file name (one per world)."""
    clf_dir = runs / f"{name}_classifier"
    start = time.perf_counter()
    clf_metrics = train_classifier(ClassifierTrainConfig(**classifier_cfg), clf_dir)
    figures[f"{name}.classifier.test_accuracy"] = clf_metrics["test_accuracy"]
    figures[f"time_s.{name}.classifier"] = round(time.perf_counter() - start, 1)
    variants = {"explainer": {}, "decoder": {"architecture": "feature-decoder"},
                "gradient_decoder": {"architecture": "feature-decoder", "decoder_gradient": True},
                **{f"explainer_{ablation}": settings for ablation, settings in (ablations or {}).items()}}
    dirs = {}
    for variant, settings in variants.items():  # the same budget for each: only the named settings differ
        dirs[variant] = runs / f"{name}_{variant}"
        start = time.perf_counter()
        train_minimal_mask(MinimalMaskTrainConfig.from_dict({
            "model": str(clf_dir), **explainer_cfg, "explainer": {**explainer_cfg["explainer"], **settings}}),
            dirs[variant])
        figures[f"time_s.{name}.{variant}"] = round(time.perf_counter() - start, 1)
    if train_only:
        return

    model, checkpoint = load_classifier(clf_dir)
    data = checkpoint.config["data"]
    x = load_images(data["name"], "test", data["root"], data["options"] or {}, eval_n)
    amortised = {"mask": MinimalMask.load(dirs["explainer"], model), "decoder": MinimalMask.load(dirs["decoder"], model),
                 "gradient_decoder": MinimalMask.load(dirs["gradient_decoder"], model)}
    explainer = amortised["mask"]
    figures[f"{name}.eval_images"] = len(x)
    scored = {key: score_explainer(network, model, x, f"{name}.{key}", figures) for key, network in amortised.items()}
    _, _, mask_rate, mask_deletion = scored["mask"]
    figures[f"{name}.mask.readout"] = explainer.config.readout
    for key, (explained, *_) in scored.items():
        figures[f"{name}.{key}.area_at_most_10pct"] = float((mask_area(explained) <= 0.1).double().mean())
    figures[f"{name}.best_amortised"] = min(amortised, key=lambda k: figures[f"{name}.{k}.deletion_auc"])
    explainer.config.readout = "threshold"  # the mask net's hard threshold alone, for comparison
    plain, plain_rate = timed(explainer.attribute, x)
    explainer.config.readout = figures[f"{name}.mask.readout"]
    figures[f"{name}.mask.threshold_readout.area"] = float(mask_area(plain).mean())
    figures[f"{name}.mask.threshold_readout.sufficiency"] = sufficiency(model, x, plain)
    figures[f"{name}.mask.threshold_readout.images_per_s"] = round(plain_rate, 2)
    if data["name"] == "parts":  # how far the true explanation keeps the label: what sufficiency can ask of a mask
        for key, truth in true_explanations(data, len(x)).items():
            figures[f"{name}.truth.{key}.area"] = float(mask_area(truth).mean())
            figures[f"{name}.truth.{key}.sufficiency"] = sufficiency(model, x, truth)
    for ablation in ablations or {}:
        score_explainer(MinimalMask.load(dirs[f"explainer_{ablation}"], model), model, x, f"{name}.ablation.{ablation}",
                        figures)

    attributors, attributor_deletion = {}, {}
    for method, key, settings in (("integrated-gradients", "ig", {"n_steps": 50}), ("gradcam", "gradcam", {}),
                                  ("saliency", "saliency", {}), ("occlusion", "occlusion", occlusion)):
        attributors[key] = create_explainer(method, model, **settings)
        maps, method_rate = timed(attributors[key].attribute, x)
        attributor_deletion[key] = deletion_auc(model, x, maps)
        figures[f"{name}.{key}.deletion_auc"] = float(attributor_deletion[key].mean())
        figures[f"{name}.{key}.sufficiency_at_10pct"] = sufficiency_at_same_area(model, x, maps)
        figures[f"{name}.{key}.images_per_s"] = round(method_rate, 2)

    subset = x[:perimage_n]
    perimage = PerImageMask(model, layers=explainer.config.layers, steps=perimage_steps, binary=False,
                            weights=explainer.config.weights, internal_batch_size=BATCH)
    perimage_soft, perimage_rate = timed(perimage.attribute, subset, warm_up=False)
    figures[f"{name}.perimage.images"] = len(subset)
    figures[f"{name}.perimage.steps"] = perimage_steps
    figures[f"{name}.perimage.area"] = float(mask_area((perimage_soft > 0.5).float()).mean())
    figures[f"{name}.perimage.sufficiency"] = sufficiency(model, subset, (perimage_soft > 0.5).float())
    figures[f"{name}.perimage.deletion_auc"] = float(deletion_auc(model, subset, perimage_soft).mean())
    for key, (_, key_ranking, _, _) in scored.items():
        figures[f"{name}.{key}.deletion_auc_on_perimage_subset"] = float(
            deletion_auc(model, subset, key_ranking[:perimage_n]).mean())
    figures[f"{name}.perimage.images_per_s"] = round(perimage_rate, 4)
    for key in ("decoder", "gradient_decoder"):
        for other, per_image in (("ig", attributor_deletion["ig"]), ("mask", mask_deletion)):
            paired_difference(scored[key][3], per_image, f"{name}.{key}.deletion_auc_minus_{other}", figures)
    rounds = speedup_rounds({"vs_ig": explainer.attribute, "decoder_vs_ig": amortised["decoder"].attribute,
                             "gradient_decoder_vs_ig": amortised["gradient_decoder"].attribute},
                            attributors["ig"].attribute, x)
    for key, ratios in rounds.items():
        figures[f"{name}.speedup.{key}_rounds"] = ratios
        figures[f"{name}.speedup.{key}"] = statistics.median(ratios)
    figures[f"{name}.speedup.vs_perimage"] = round(mask_rate / perimage_rate, 1)
    best = min(("ig", "gradcam", "saliency", "occlusion"), key=lambda k: figures[f"{name}.{k}.deletion_auc"])
    figures[f"{name}.best_captum"] = best

    _, explanation = explainer.explain(x[:1])
    graph = readout(model, explanation[0])
    figures[f"{name}.circuit.nodes"] = graph.number_of_nodes()
    figures[f"{name}.circuit.edges"] = graph.number_of_edges()
    figure = results_dir / f"minimal_mask_{name}{figure_tag}_circuit.png"
    circuit_figure(graph, figure, image=explanation[0])
    figures[f"{name}.circuit.figure"] = str(figure)


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--only", choices=("fmnist", "parts"), help="measure one classifier (default: both, side by side)")
        parser.add_argument("--train-only", action="store_true",
                            help="train the run folders and stop (measure later with --resume on an idle machine)")

        add_world_options(parser)

    args = parse_run_args(__doc__, options)
    runs = run_folders(args, "minimal_mask")
    results_dir = args.out.parent
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        fmnist = dict(data="fashion-mnist", data_options={"limit": 256}, backbone="small-cnn", epochs=1)
        parts = dict(data="parts", data_options={"image_size": 64, "train_size": 96, "test_size": 48}, backbone="lite0",
                     image_size=64, epochs=3, lr=1e-2, cache_dir=str(args.cache))
        fmnist_mm = dict(train_limit=64, test_limit=8, explainer={"epochs": 1, "width": 4})
        parts_mm = dict(train_limit=32, test_limit=8, explainer={"epochs": 1, "width": 4})
        eval_n, perimage_n, steps, occlusion = 4, 2, 3, {"window": 16, "stride": 16}
    else:
        fmnist = dict(data="fashion-mnist", backbone="small-cnn", epochs=3)
        parts = dict(data="parts", data_options={"image_size": 128, "train_size": 2400, "test_size": 480},
                     backbone="lite0", image_size=128, epochs=100, lr=1e-2, cache_dir=str(args.cache))
        # the default objective weights (the training run calibrates the threshold on training images)
        fmnist_mm = dict(train_limit=60000, test_limit=500, explainer={"epochs": 4, "threshold": 1.5, "width": WIDTH})
        parts_mm = dict(train_limit=2400, test_limit=200, explainer={"epochs": 6, "batch_size": 16, "width": WIDTH})
        eval_n, perimage_n, steps, occlusion = 200, 32, 150, {}
    figures: dict = {"settings.batch": BATCH}
    if args.only in (None, "fmnist"):
        # the deletion term's trade-off, on the classifier where an explainer trains in minutes
        measure("fmnist", fmnist, fmnist_mm, eval_n, perimage_n, steps, occlusion, runs, results_dir, figures, args.train_only,
                {"no_deletion": {"weights": {"deletion": 0.0}}})

    def parts_world(seed: int, clutter: int | None) -> dict:
        """The part-world figures of one world (those measured before, with ``--resume``)."""
        world_runs_dir = world_runs(runs, seed, clutter, args.preset)
        measured = world_runs_dir / "figures.json"
        if args.resume and measured.exists():
            return read_json(measured, "measured figures")
        world_figures: dict = {}
        classifier = {**parts, "data_options": world_options(seed, clutter, args.preset, parts["data_options"])}
        tag = "" if world_runs_dir == runs else f"_{world_runs_dir.name}"
        measure("parts", classifier, parts_mm, eval_n, perimage_n, steps, occlusion, world_runs_dir, results_dir, world_figures,
                args.train_only, figure_tag=tag)
        if not args.train_only:
            write_json(measured, world_figures)
        return world_figures

    if args.only in (None, "parts"):
        figures.update(over_worlds(parts_world, args.worlds, args.clutter))
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
