"""Every score key sparsex prints, with its direction, in one place (Quantus-style).

A key of ``metrics.json`` (an evaluation's rows and cost, a training run's stages), of the HTML
report or of a benchmark table (the last dotted component: ``side.prototypes.local_size`` is
``local_size``) is registered here once, as a :class:`MetricInfo`: its ``direction``
(``"higher"`` or ``"lower"`` is better, or ``None`` for counts, settings and times), its
``category`` (one of :data:`CATEGORIES`), a short column ``label`` and a one-line
``description``. The report bolds the best value and draws an arrow only from the direction
stated here, and orders its columns as :func:`list_metrics` lists them.

The :class:`~sparsex.metrics.prototype.Metric` classes take their ``higher_is_better`` from this
table when they are defined (by their ``name``), so no direction is stated twice.

Typical use::

    from sparsex.metrics import list_metrics, metric_info

    metric_info("deletion_auc").direction                    # "lower"
    metric_info("completeness_tau").direction                # None: a setting
    [m.name for m in list_metrics("part protocols")]          # ["bi", "completeness", ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ..errors import InputError

#: ``"higher"`` / ``"lower"`` is better; ``None``: neither (a count, a setting, a time).
Direction = Optional[Literal["higher", "lower"]]
HIGHER: Direction = "higher"
LOWER: Direction = "lower"
#: The categories, in the order a report groups its columns.
CATEGORIES = ("accuracy", "part protocols", "faithfulness", "sparsity", "prototype quality", "latent", "training", "cost",
              "count", "setting")
#: The category of a key that is not registered.
UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class MetricInfo:
    """What sparsex says about one score key: ``direction`` (``"higher"``, ``"lower"`` or
    ``None``), ``category`` (in :data:`CATEGORIES`, or :data:`UNREGISTERED`), ``description``
    (one line) and ``label`` (a short column header; the name where none is needed)."""

    name: str
    direction: Direction
    category: str
    description: str
    label: str

    @property
    def higher_is_better(self) -> bool | None:
        """True / False from the direction; None where the key has none."""
        return None if self.direction is None else self.direction == HIGHER


# (name, direction, category, label or "" for the name, description); registry order is report order
_TABLE: tuple[tuple[str, Direction, str, str, str], ...] = (
    # accuracy
    ("accuracy", HIGHER, "accuracy", "acc",
     "top-1 accuracy: the fraction of images whose predicted class is the label (an abstention counts as wrong)"),
    ("test_accuracy", HIGHER, "accuracy", "test acc", "top-1 accuracy on the test split (a classifier run's stages)"),
    ("abstention", LOWER, "accuracy", "abstain",
     "the fraction of images whose logits all tie (no evidence for any class); accuracy counts them wrong"),
    ("test_abstention", LOWER, "accuracy", "test abstain",
     "the abstention fraction on the test split (a classifier run's stages)"),
    ("val_accuracy", HIGHER, "accuracy", "val acc", "top-1 accuracy on the validation split"),
    ("accuracy_after_pretrain", HIGHER, "accuracy", "acc after pretrain",
     "top-1 accuracy after a prototype model's pretraining stage"),
    ("ocla_score", HIGHER, "accuracy", "OCLA",
     "one-class-above: the fraction of images on which exactly the true class has probability above t"),
    # the part-world protocols (sparsex.partworld.protocols)
    ("parts", HIGHER, "part protocols", "",
     "the part-world protocols of one explainer (PartProtocols), every score higher-is-better"),
    ("bi", HIGHER, "part protocols", "BI",
     "background independence: 1 - the share of (image, clutter object) pairs whose removal lowers the logit by 5% or more"),
    ("completeness", HIGHER, "part protocols", "compl",
     "FunnyBirds completeness: ((CSDC + PC + DC) / 3 + distractibility) / 2 at the best threshold"),
    ("correctness", HIGHER, "part protocols", "correct",
     "single deletion: (Spearman rank correlation of part importances and logit drops + 1) / 2"),
    ("contrastivity", HIGHER, "part protocols", "contrast",
     "target sensitivity: the explanations of two contrasting classes point at their own parts"),
    ("csdc", HIGHER, "part protocols", "CSDC",
     "controlled synthetic data check: the share of a minimal sufficient part set marked important"),
    ("pc", HIGHER, "part protocols", "PC", "preservation check: keeping only the important parts keeps the prediction"),
    ("dc", HIGHER, "part protocols", "DC", "deletion check: removing the important parts changes the prediction"),
    ("distractibility", HIGHER, "part protocols", "distract",
     "1 - the share of the irrelevant parts and clutter objects marked important"),
    # faithfulness (sparsex.metrics.faithfulness)
    ("deletion_auc", LOWER, "faithfulness", "del AUC",
     "area under the predicted class's probability as the most important pixels are replaced by the baseline"),
    ("insertion_auc", HIGHER, "faithfulness", "ins AUC",
     "area under the predicted class's probability as the most important pixels are restored into the baseline"),
    ("deletion_auc_on_perimage_subset", LOWER, "faithfulness", "del AUC (subset)",
     "deletion AUC on the per-image baseline's subset of the images"),
    ("sufficiency", HIGHER, "faithfulness", "suff",
     "the fraction of images whose prediction the mask alone (over the blurred image) keeps"),
    ("sufficiency_at_10pct", HIGHER, "faithfulness", "suff @10%",
     "sufficiency of the top 10% of the pixels of each ranking"),
    ("evidence_on_parts", HIGHER, "faithfulness", "evidence on parts",
     "the share of the prototype evidence that lies on the creature's parts"),
    # sparsity
    ("mask_area", LOWER, "sparsity", "mask area", "the fraction of the pixels a binary mask keeps"),
    ("area", LOWER, "sparsity", "", "the fraction of the pixels a binary mask keeps (benchmark tables)"),
    ("local_size", LOWER, "sparsity", "local size (pred)",
     "sparsex's local size: prototypes with s_p W[c, p] > eps for the predicted class c (mean over images)"),
    ("local_size_true", LOWER, "sparsity", "local size (true)",
     "ProtoS-ViT's local size: prototypes with importance >= eps for the true class (mean over images)"),
    ("local_size_all", LOWER, "sparsity", "local size (all)",
     "prototypes that contribute to any class of an image (mean over images)"),
    ("global_size", LOWER, "sparsity", "global size (weights)",
     "sparsex's global size: prototypes with a class weight above eps, over all classes"),
    ("global_size_used", LOWER, "sparsity", "global size (used)",
     "ProtoS-ViT's global size: prototypes with a true-class importance >= eps on at least one test image"),
    ("zero_weight_fraction", HIGHER, "sparsity", "zero weights", "the fraction of class weights below eps"),
    # prototype quality (sparsex.metrics.consistency)
    ("consistency", HIGHER, "prototype quality", "consist",
     "the fraction of prototypes whose region covers one part on at least mu of their class's images "
     "(mean over prototypes, or over classes: the evaluation's prototype_settings name which)"),
    ("stability", HIGHER, "prototype quality", "stab",
     "how often a prototype's parts stay the same under image noise (noise space and average named in the "
     "evaluation's prototype_settings; default EvalProtoPNet's: N(0, 0.2) on the normalised image, over prototypes)"),
    # sparse latents (sparsex.metrics.latent, the VSC runs)
    ("active_dims", LOWER, "latent", "active dims", "latent dimensions with spike probability above 0.5 (mean per sample)"),
    ("jsd_within", LOWER, "latent", "JSD within",
     "mean Jensen-Shannon divergence between the spike probabilities of same-class samples"),
    ("probe_accuracy", HIGHER, "latent", "probe acc", "test accuracy of a logistic regression on the spike probabilities"),
    ("bce", LOWER, "latent", "BCE", "reconstruction binary cross-entropy per image (sampled code)"),
    ("bce_code", LOWER, "latent", "BCE (code)", "reconstruction binary cross-entropy per image (mean code)"),
    ("kl", LOWER, "latent", "KL", "KL divergence of the spike-and-slab posterior from its prior, per image"),
    ("footwear_corr_within", HIGHER, "latent", "footwear corr within",
     "mean correlation between the class-mean codes of two footwear classes"),
    ("footwear_corr_across", LOWER, "latent", "footwear corr across",
     "mean correlation between the class-mean codes of a footwear class and another class"),
    # training (the stages of a run's metrics.json)
    ("train_loss", LOWER, "training", "train loss", "the training loss of the stage's last epoch"),
    ("train_bce", LOWER, "training", "train BCE", "VSC's training reconstruction term of the epoch"),
    ("train_kl", LOWER, "training", "train KL", "VSC's training KL term of the epoch"),
    ("train_jsd", LOWER, "training", "train JSD", "VSC's training within-class JSD term of the epoch"),
    ("train_kept", None, "training", "train kept", "the fraction of the pixels the mask explainer kept in training"),
    # cost
    ("images_per_s", HIGHER, "cost", "images/s", "throughput: images explained or rendered per second"),
    ("speedup", HIGHER, "cost", "", "how many times faster than the reference"),
    ("explain_seconds", None, "cost", "explain s", "seconds spent in the explainer"),
    ("explain_s", None, "cost", "explain s", "seconds spent in the explainers"),
    ("wall_s", None, "cost", "wall s", "wall-clock seconds of the whole evaluation"),
    ("forward_passes", None, "cost", "forward passes", "forward passes of the part protocols' interventions"),
    ("forward_s", None, "cost", "forward s", "seconds of the part protocols' forward passes"),
    ("render_s", None, "cost", "render s", "seconds spent rendering the part protocols' interventions"),
    ("parts_protocol_s", None, "cost", "protocol s", "seconds of the part protocols, explanations excluded"),
    ("seconds_per_forward", None, "cost", "s / forward", "seconds of one image's forward pass"),
    # counts
    ("images", None, "count", "", "images evaluated"),
    ("bi_objects", None, "count", "BI objects", "(image, clutter object) pairs of the BI protocol"),
    ("csdc_images", None, "count", "CSDC images", "correctly classified images scored by CSDC"),
    ("distractibility_images", None, "count", "distract images", "images with an irrelevant item"),
    ("distractibility_skipped", None, "count", "distract skipped", "images without an irrelevant item"),
    ("correctness_images", None, "count", "correct images", "images with a defined rank correlation"),
    ("correctness_skipped", None, "count", "correct skipped", "images whose rank correlation is undefined"),
    ("contrastivity_images", None, "count", "contrast images", "images on which the model meets the protocol's assumption"),
    ("contrastivity_skipped_model", None, "count", "contrast skipped (model)",
     "images on which the model does not meet the protocol's assumption"),
    ("contrastivity_skipped_no_pair", None, "count", "contrast skipped (no pair)",
     "images whose class has no contrasting pair of classes"),
    ("prototypes_counted", None, "count", "prototypes scored", "prototypes scored by consistency and stability"),
    ("prototypes_skipped", None, "count", "prototypes skipped", "used prototypes whose class has no image"),
    ("prototypes_unused", None, "count", "prototypes unused", "prototypes without a class weight above eps"),
    ("num_images", None, "count", "images", "images the prototype scores were measured on"),
    ("auc_images", None, "count", "AUC images", "images the deletion / insertion curves were measured on"),
    ("classes_above_t_histogram", None, "count", "classes above t", "images by the number of classes above t"),
    ("dims_global", None, "count", "global dims", "latent dimensions active for most classes"),
    ("dims_class_specific", None, "count", "class dims", "latent dimensions active for few classes"),
    ("dims_unused", None, "count", "unused dims", "latent dimensions active for no class"),
    ("pruned_connections", None, "count", "pruned", "class-prototype connections pruned"),
    ("unrescued", None, "count", "", "calibration images no fallback area rescues"),
    # settings
    ("completeness_tau", None, "setting", "compl τ", "the importance threshold at which completeness is best"),
    ("threshold", None, "setting", "", "the mask explainer's calibrated threshold"),
    ("fallback_areas", None, "setting", "", "the mask explainer's fallback areas"),
    ("cells_on_parts_chance", None, "setting", "on parts (chance)", "the share of feature cells on the parts"),
    ("mu", None, "setting", "μ", "consistency's frequency threshold"),
    ("sigma", None, "setting", "σ", "stability's noise level"),
    ("region", None, "setting", "", "the side of a prototype's region, as a fraction of the image"),
    ("min_overlap", None, "setting", "min overlap", "pixels of a part a region must cover"),
    ("eps", None, "setting", "ε", "the weight threshold of the sizes"),
    ("seed", None, "setting", "", "the random seed"),
    ("epoch", None, "setting", "", "the training epoch"),
    ("spike_scale", None, "setting", "spike scale", "the VSC spike scale at the end of the epoch"),
    # concept dictionaries (sparsex.dictionaries, docs/metrics.md "Concept dictionaries")
    ("recovery_auroc", HIGHER, "latent", "recovery AUROC", "mean over ground-truth concepts of the best atom's AUROC"),
    ("recovery_f1", HIGHER, "latent", "recovery F1", "mean over concepts of the best atom's best F1"),
    ("recovered_fraction", HIGHER, "latent", "recovered", "share of concepts whose best atom has AUROC >= 0.9"),
    ("recovered_distinct", HIGHER, "latent", "recovered (own atom)",
     "share of concepts whose atom in the one-to-one assignment of atoms to concepts has AUROC >= 0.9"),
    ("recovery_vs_supervised", HIGHER, "latent", "recovery / supervised",
     "recovery AUROC as a fraction of the supervised dictionary's"),
    ("purity", HIGHER, "latent", "", "mean over firing atoms of the largest share of an atom's code mass on one concept"),
    ("unmatched", LOWER, "latent", "", "share of atoms whose best AUROC over all concepts is below 0.9"),
    ("control", HIGHER, "latent", "", "share of variant-swap edits in the activations that move the probe to the target class"),
    ("variant_control", HIGHER, "latent", "variant control",
     "share of variant-swap edits after which the slot's own variant probe reads the new variant"),
    ("fvu", LOWER, "latent", "FVU", "fraction of variance unexplained by a dictionary's reconstruction"),
    ("l0", None, "sparsity", "L0", "mean number of non-zero codes per sample (set equal across methods)"),
    ("dead", LOWER, "sparsity", "", "share of atoms that are zero on every test sample"),
    ("train_s", None, "cost", "train s", "seconds fitting a dictionary on cached features"),
    ("control_edits", None, "count", "edits", "variant-swap edits tried (correctly classified images x one-slot swaps)"),
    ("variant_control_edits", None, "count", "variant edits",
     "variant-swap edits tried (images whose variant the slot's probe reads right x other variants, over the slots)"),
    ("train_samples", None, "count", "samples", "activation samples a dictionary was fitted on"),
    ("l0_weight", None, "setting", "L0 weight", "the JumpReLU SAE's steered L0 penalty weight at the end of training"),
    ("threshold_scale", None, "setting", "threshold scale",
     "the factor on a JumpReLU SAE's thresholds that makes its training mean L0 equal k"),
)


def _build() -> dict[str, MetricInfo]:
    infos: dict[str, MetricInfo] = {}
    for name, direction, category, label, description in _TABLE:
        assert name not in infos, f"metric {name!r} is registered twice"
        assert category in CATEGORIES, f"metric {name!r}: unknown category {category!r}"
        infos[name] = MetricInfo(name, direction, category, description, label or name)
    # report order: by category, then as listed
    return dict(sorted(infos.items(), key=lambda item: CATEGORIES.index(item[1].category)))


_METRICS = _build()


def metric_info(name: str) -> MetricInfo:
    """What the registry says about score key ``name``; a key it does not know gets direction
    None (no best, no arrow), category :data:`UNREGISTERED` and an empty description."""
    if not isinstance(name, str):
        raise InputError(f"a metric name must be a string, got {type(name).__name__}")
    return _METRICS.get(name) or MetricInfo(name, None, UNREGISTERED, "", name)


def list_metrics(category: str | None = None) -> list[MetricInfo]:
    """Every registered key (of ``category`` where given), in report order: by category as in
    :data:`CATEGORIES`, then as registered."""
    if category is not None and category not in CATEGORIES:
        raise InputError(f"unknown metric category {category!r}; valid: {', '.join(CATEGORIES)}")
    return [info for info in _METRICS.values() if category is None or info.category == category]
