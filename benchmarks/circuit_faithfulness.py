"""Faithfulness of the circuit readout by ablation (``sparsex.explainers.circuit_faithfulness``) on the
classifiers of ``benchmarks/minimal_mask.py``: the small CNN trained on Fashion-MNIST and the linear
probe on frozen Lite0 features of the part world (128 px).

    python benchmarks/circuit_faithfulness.py --out RESULT.json [--quick] [--resume] [--only fmnist|parts]

Per test image, its own readout at the default ``top_k`` (8 channels per layer, the default 3
layers) is ablated: mean ablation over ``REFERENCE_N`` training images (the dataset mean, Wang et
al. 2022), and zero ablation beside it. Two readouts: the paper's (channels by activation,
``<clf>.circuit.*``) and ``selection="attribution"`` (channels by integrated-gradients attribution
from the same reference mean, ``<clf>.circuit.attribution.*``). Figures ``<clf>.circuit.*``: ``sufficiency_label`` (the
fraction of images whose label the circuit alone keeps), ``sufficiency_logit`` (mean
``z_t^C / z_t``), ``necessity_drop`` (mean ``(z_t - z_t^{-C}) / z_t``), ``random_drop`` (the same
number of random channels per layer, 20 draws), ``activation_drop`` (the most active channels),
the curve over ``k`` with its areas, and on the part world the share of circuit channels'
activation mass on the parts (``part_overlap``) against the parts' share of the image. The
issue's bar: ``sufficiency_label >= 0.9`` and ``necessity_drop >= 3 random_drop``; ``bar.*`` says
whether each is met, by how much, without changing the metric. ``necessity_over_random_se`` is the
ratio's bootstrap standard error over the eval images (``BOOTSTRAP`` resamples; the random draws
fixed), to read a bar missed or met by a hair against.

``<clf>.circuit.attribution.*`` is the attribution readout at its defaults: ``share`` 0.6 of each layer's positive
attribution (``DEFAULT_SHARE``), then the ``sufficient`` cut to the fewest of those channels that alone keep the label
(``attribution.cut_sufficient``: the fraction of images where some do; ``attribution.held_out.*``: its label and ratio
on the held-out images below). ``<clf>.circuit.attribution_share.*`` is the same readout without the cut,
``<clf>.circuit.attribution_top_k.*`` without it at ``top_k`` 8, ``<clf>.circuit.activation_sufficient.*`` the paper's
readout (8 per layer) with the cut.
``<clf>.circuit.share.*``: how the default share was chosen where the measured images cannot see it: per share of
``SHARES``, the fraction of ``CALIBRATE_N`` held-out test images (after the measured ones) whose circuit alone keeps
the label (``share.held_out_label``, without the cut), and the smallest share reaching 90% (``share.sufficient``); the library's
default is the larger of the two classifiers' (benchmarks/README.md). ``<clf>.circuit.calibrated.*``: the attribution
readout at the smallest ``k`` of the curve keeping the label on 90% of the same held-out images
(``calibrated.top_k``), measured on the eval images like the others.

The classifiers are trained as ``minimal_mask.py`` trains them; its run folders
(``<cache>/minimal_mask_runs[_quick]/<clf>_classifier``) are reused when they hold a finished
run, otherwise the classifier is trained into ``<cache>/circuit_faithfulness_runs[_quick]``.
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import time

import torch
from _common import parse_run_args, run_folders, write_result

from sparsex.data import create_dataset
from sparsex.explainers.circuit import DEFAULT_SHARE, DEFAULT_TOP_K, readout
from sparsex.explainers.circuit_faithfulness import circuit_faithfulness, faithfulness_curve, part_overlap
from sparsex.explainers.circuit_sites import reference_means
from sparsex.models.classifier import load_classifier
from sparsex.train.classifier import ClassifierTrainConfig, train_classifier
from sparsex.train.minimal_mask import load_images

REFERENCE_N = 256  # training images whose mean activations replace ablated channels
BAR_LABEL, BAR_RATIO = 0.9, 3.0
BOOTSTRAP = 1000  # resamples of the eval images for the necessity ratio's standard error
CURVE_N = 32  # the first test images, for the curve over k (each k ablates all of them 23 times)
CALIBRATE_N = 32  # the test images after the measured ones, on which the calibrated circuit size is chosen
SHARES = (0.4, 0.5, 0.6, 0.7, 0.8)  # the attribution readout's shares tried on them (its default: one of these)


def classifier_folder(name: str, config: dict, runs, args):
    """A finished classifier run of minimal_mask.py, or one trained here."""
    theirs = args.cache / ("minimal_mask_runs_quick" if args.quick else "minimal_mask_runs") / f"{name}_classifier"
    if (theirs / "checkpoint").exists():
        return theirs, "minimal_mask"
    train_classifier(ClassifierTrainConfig(**config), runs / f"{name}_classifier", progress=False)
    return runs / f"{name}_classifier", "trained here"


def ratio_standard_error(per_image: list[dict], resamples: int = BOOTSTRAP, seed: int = 0) -> float | None:
    """The bootstrap standard error of ``mean(necessity_drop) / mean(random_drop)`` over the images where both are
    defined (images resampled with replacement, ``resamples`` times)."""
    pairs = torch.tensor([(p["necessity_drop"], p["random_drop"]) for p in per_image
                          if p["necessity_drop"] is not None and p["random_drop"] is not None], dtype=torch.float64)
    if len(pairs) < 2:
        return None
    drawn = pairs[torch.randint(len(pairs), (resamples, len(pairs)), generator=torch.Generator().manual_seed(seed))]
    return float((drawn[..., 0].mean(dim=1) / drawn[..., 1].mean(dim=1)).std())


def faithfulness_figures(result: dict, key: str, bar: bool) -> dict:
    """The figures of one :func:`circuit_faithfulness` result under ``key``; with ``bar`` also the circuit's size and
    whether the issue's bars are met (and by how much they are missed)."""
    figures = {
        f"{key}.sufficiency_label": result["sufficiency"]["label"],
        f"{key}.sufficiency_logit": result["sufficiency"]["logit"],
        f"{key}.sufficiency_probability": result["sufficiency"]["probability"],
        f"{key}.clean_probability": result["clean"]["probability"],
        f"{key}.necessity_drop": result["necessity"]["drop"],
        f"{key}.necessity_label_lost": result["necessity"]["label_lost"],
        f"{key}.random_drop": result["random"]["drop"],
        f"{key}.random_drop_std": result["random"]["drop_std"],
        f"{key}.activation_drop": result["activation"]["drop"],
        f"{key}.activation_same": result["activation"]["same"],
        f"{key}.necessity_over_random": result["necessity_over_random"],
        f"{key}.necessity_over_random_se": ratio_standard_error(result["per_image"]),
        f"{key}.positive_logit_images": result["positive_logit_images"],
    }
    if bar:
        figures[f"{key}.circuit_channels"] = result["circuit_channels"]
        figures[f"{key}.layer_channels"] = result["layer_channels"]
        label, ratio = result["sufficiency"]["label"], result["necessity_over_random"]
        figures[f"{key}.bar.sufficiency_label_met"] = label >= BAR_LABEL
        figures[f"{key}.bar.sufficiency_label_short_by"] = round(max(0.0, BAR_LABEL - label), 4)
        figures[f"{key}.bar.necessity_ratio_met"] = ratio is not None and ratio >= BAR_RATIO
        figures[f"{key}.bar.necessity_ratio_short_by"] = None if ratio is None else round(max(0.0, BAR_RATIO - ratio), 4)
    return figures


def measure(name: str, config: dict, eval_n: int, reference_n: int, runs, args, figures: dict) -> None:
    start = time.perf_counter()
    folder, source = classifier_folder(name, config, runs, args)
    figures[f"{name}.classifier.run"] = source
    figures[f"time_s.{name}.classifier"] = round(time.perf_counter() - start, 1)
    model, checkpoint = load_classifier(folder)
    model.eval()
    data = checkpoint.config["data"]
    # the first eval_n test images are measured, the CALIBRATE_N after them choose the calibrated circuit size
    test_images = load_images(data["name"], "test", data["root"], data["options"] or {}, eval_n + CALIBRATE_N, progress=False)
    x, held_out = test_images[:eval_n], test_images[eval_n:]
    reference = load_images(data["name"], "train", data["root"], data["options"] or {}, reference_n, progress=False)
    figures[f"{name}.eval_images"], figures[f"{name}.reference_images"] = len(x), len(reference)

    start = time.perf_counter()
    prefix = f"{name}.circuit"
    graphs = {"activation": [readout(model, x[i]) for i in range(len(x))]}
    layers, measured_at = graphs["activation"][0].graph["layers"], graphs["activation"][0].graph["measured_at"]
    means = reference_means(model, reference, layers, measured_at)  # once: the ablations' and the attribution's start
    graphs["attribution"] = [readout(model, x[i], selection="attribution", reference=means) for i in range(len(x))]
    graphs["attribution_share"] = [readout(model, x[i], selection="attribution", reference=means, sufficient=False)
                                   for i in range(len(x))]
    graphs["attribution_top_k"] = [readout(model, x[i], selection="attribution", reference=means, top_k=DEFAULT_TOP_K,
                                           sufficient=False) for i in range(len(x))]
    graphs["activation_sufficient"] = [readout(model, x[i], reference=means, sufficient=True) for i in range(len(x))]
    figures[f"{prefix}.top_k"], figures[f"{prefix}.attribution.share"] = DEFAULT_TOP_K, DEFAULT_SHARE
    figures[f"{prefix}.layers"] = layers
    figures[f"time_s.{name}.attribution_readout"] = round(time.perf_counter() - start, 1)
    for selection, ablation, key in (("activation", "mean", prefix), ("activation", "zero", f"{prefix}.zero"),
                                     ("attribution", "mean", f"{prefix}.attribution"),
                                     ("attribution_share", "mean", f"{prefix}.attribution_share"),
                                     ("attribution_top_k", "mean", f"{prefix}.attribution_top_k"),
                                     ("activation_sufficient", "mean", f"{prefix}.activation_sufficient")):
        result = circuit_faithfulness(model, x, graphs[selection], reference=means, ablation=ablation)
        figures.update(faithfulness_figures(result, key, bar=ablation == "mean"))
    for selection in ("attribution", "activation_sufficient"):  # how often the readout's own cut found a sufficient prefix
        figures[f"{prefix}.{selection}.cut_sufficient"] = sum(g.graph["sufficient"] is True for g in graphs[selection]) / len(x)

    for selection, key in (("activation", prefix), ("attribution", f"{prefix}.attribution")):
        curve = faithfulness_curve(model, x[:CURVE_N], reference=means, selection=selection)
        figures[f"{key}.curve.images"] = curve["images"]
        figures[f"{key}.curve.points"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}
                                          for p in [curve["empty"], *curve["points"], curve["full"]]]
        figures[f"{key}.curve.auc"] = {k: round(v, 4) for k, v in curve["auc"].items()}
        figures[f"{key}.curve.sufficient_k"] = curve["sufficient_k"]

    # the default share, chosen where the measured images cannot see it: per share, the held-out images whose circuit
    # alone keeps the label
    kept = {}
    for share in SHARES:
        circuits = [readout(model, image, selection="attribution", reference=means, share=share, sufficient=False)
                    for image in held_out]
        kept[share] = circuit_faithfulness(model, held_out, circuits, reference=means, random_draws=1)["sufficiency"]["label"]
    figures[f"{prefix}.share.held_out_label"] = {str(share): label for share, label in kept.items()}
    figures[f"{prefix}.share.sufficient"] = next((share for share in SHARES if kept[share] >= BAR_LABEL), None)
    # the default readout (the share, then the sufficient cut) on the same held-out images: both bars where the measured
    # images cannot see them
    held = circuit_faithfulness(model, held_out, [readout(model, image, selection="attribution", reference=means)
                                                  for image in held_out], reference=means)
    figures[f"{prefix}.attribution.held_out.sufficiency_label"] = held["sufficiency"]["label"]
    figures[f"{prefix}.attribution.held_out.necessity_over_random"] = held["necessity_over_random"]

    # the circuit size chosen where the measured images cannot see it: the smallest k of the curve whose attribution
    # circuits keep the label on 90% of CALIBRATE_N other test images; then measured at that k on the eval images
    calibrated_k = faithfulness_curve(model, held_out, reference=means, selection="attribution")["sufficient_k"]
    figures[f"{prefix}.calibrated.images"], figures[f"{prefix}.calibrated.top_k"] = len(held_out), calibrated_k
    if calibrated_k is not None:
        calibrated = [readout(model, x[i], selection="attribution", reference=means, top_k=calibrated_k, sufficient=False)
                      for i in range(len(x))]
        figures.update(faithfulness_figures(circuit_faithfulness(model, x, calibrated, reference=means),
                                            f"{prefix}.calibrated", bar=True))

    if data["name"] == "parts":
        world = create_dataset("parts", split="test", root=data["root"], **(data["options"] or {}))
        masks = torch.stack([world[i]["part_masks"] for i in range(len(x))])
        for selection, key in (("activation", prefix), ("attribution", f"{prefix}.attribution")):
            overlap = part_overlap(model, x, masks, graphs[selection])
            figures.update({f"{key}.part_overlap.{k}": v for k, v in overlap.items()})
    figures[f"time_s.{name}.circuit_faithfulness"] = round(time.perf_counter() - start, 1)


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--only", choices=("fmnist", "parts"), help="measure one classifier (default: both)")

    args = parse_run_args(__doc__, options)
    runs = run_folders(args, "circuit_faithfulness")
    if args.quick:  # minimal_mask.py's quick classifiers
        fmnist = dict(data="fashion-mnist", data_options={"limit": 256}, backbone="small-cnn", epochs=1)
        parts = dict(data="parts", data_options={"image_size": 64, "train_size": 96, "test_size": 48}, backbone="lite0",
                     image_size=64, epochs=3, lr=1e-2, cache_dir=str(args.cache))
        eval_n, reference_n = 8, 16
    else:  # minimal_mask.py's classifiers
        fmnist = dict(data="fashion-mnist", backbone="small-cnn", epochs=3)
        parts = dict(data="parts", data_options={"image_size": 128, "train_size": 2400, "test_size": 480},
                     backbone="lite0", image_size=128, epochs=100, lr=1e-2, cache_dir=str(args.cache))
        eval_n, reference_n = 200, REFERENCE_N
    figures: dict = {"settings.reference_n": reference_n}
    for name, config in (("fmnist", fmnist), ("parts", parts)):
        if args.only in (None, name):
            measure(name, config, eval_n, reference_n, runs, args, figures)
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
