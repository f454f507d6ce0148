"""Concept dictionaries on frozen Lite0 features of the part world, graded on the ground truth.

Every method (TopK, BatchTopK, Matryoshka, JumpReLU and matching-pursuit SAEs, semi-NMF, PCA, ICA, k-means) is
trained with ``sparsex train dictionary`` (:func:`sparsex.train.dictionary.train_dictionary`) on the
same cached features, at the same dictionary size ``--atoms`` and the same target mean L0 ``--k``
(k-means codes one centre per patch, so its L0 is 1), and graded on the test split beside the
supervised dictionary (the ceiling): concept recovery (mean best-atom AUROC, the share of concepts
with AUROC >= 0.9, and as a fraction of the supervised dictionary's), purity, FVU, measured L0, dead
atoms, control success and training time on cached features. MP-SAE vs TopK SAE at equal L0 is
reported under ``mp_vs_topk``.

    python benchmarks/dictionaries_parts.py --out RESULT.json [--quick] [--resume [--remeasure]] [--worlds 0 1 2]

Over several part worlds (``--worlds`` seeds, ``--clutter`` levels; ``_common.over_worlds``) every
figure is reported as ``.mean`` / ``.sd`` / ``.worst`` / ``.values``, and ``best_recovered`` and
``mp_vs_topk`` compare the means. The settings (1000 train images, 256 atoms, mean L0 16) were
chosen from a sweep on world 0 alone (benchmarks/README.md); the recovered fraction moved by up
to 0.16 between runs of one setting, so it is read over worlds, not from one fit.

Part-world images at ``--image-size`` (128) px, fed to Lite0 at its own input size (224), features of
its last block (``--layer 4``: a 7 x 7 grid of 320 channels, before the 1280-channel head convolution,
which would make every fit four times dearer on a CPU); one sample per feature-map cell. Features are cached in ``--cache``
(default ``benchmarks/.cache``); run folders go to ``<cache>/dictionaries_runs[_quick]``. The ground truth
(concepts, probes, the supervised dictionary) is computed once per world and shared by the methods' runs;
``--remeasure`` grades finished runs again (``train_dictionary(remeasure=True)``), e.g. after a new grading figure.
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import math

from _common import add_world_options, over_worlds, parse_run_args, run_folders, world_options, world_runs, write_result

from sparsex.dictionaries import METHODS
from sparsex.train.dictionary import DictionaryTrainConfig, train_dictionary

SCALARS = ("recovery_auroc", "recovered_fraction", "recovered_distinct", "recovery_f1", "purity", "unmatched", "fvu", "l0", "dead", "control",
           "control_edits", "variant_control", "variant_control_edits", "train_s")
SUPERVISED = ("recovery_auroc", "recovered_fraction", "recovered_distinct", "recovery_f1", "purity", "unmatched", "control", "variant_control")


def options(parser) -> None:
    parser.add_argument("--train-size", type=int, default=1000, help="part-world train images (default 1000)")
    parser.add_argument("--test-size", type=int, default=160, help="part-world test images (default 160)")
    parser.add_argument("--image-size", type=int, default=128, help="part-world image side in pixels (default 128)")
    parser.add_argument("--atoms", type=int, default=256, help="dictionary size of every method (default 256)")
    parser.add_argument("--k", type=int, default=16, help="target mean L0 of every method but k-means (default 16)")
    parser.add_argument("--epochs", type=int, default=20, help="SAE training epochs (default 20)")
    parser.add_argument("--layer", type=int, default=4, help="Lite0 feature layer (default 4: 320 channels, stride 32)")
    parser.add_argument("--min-cover", type=float, default=0.05, help="patch coverage for a concept (default 0.05)")
    parser.add_argument("--remeasure", action="store_true",
                        help="with --resume: grade finished runs again with this version's grading (fits and train_s kept)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to run (default all)")
    add_world_options(parser)


def main() -> None:
    args = parse_run_args(__doc__, extra=options)
    if args.quick:
        args.train_size, args.test_size, args.atoms, args.k, args.epochs = 48, 24, 32, 4, 3
    all_runs = run_folders(args, "dictionaries")
    common = {"data": "parts", "backbone": "lite0", "layer": args.layer, "atoms": args.atoms, "epochs": args.epochs,
              "min_cover": args.min_cover, "cache_dir": str(args.cache / "features"), "batch_size": 256}
    sizes = {"image_size": args.image_size, "train_size": args.train_size, "test_size": args.test_size}

    def run_one(seed: int, clutter: int | None) -> dict:
        """Every method and the supervised dictionary on one world."""
        runs = world_runs(all_runs, seed, clutter, args.preset)
        data_options = world_options(seed, clutter, args.preset, sizes)
        figures = {}
        for method in args.methods:
            config = DictionaryTrainConfig.from_dict({**common, "data_options": data_options, "method": method,
                                                      "k": 1 if method == "kmeans" else args.k})
            final = train_dictionary(config, runs / method, progress=not args.quick, remeasure=args.remeasure)
            figures.update({f"{method}.{key}": final[key] for key in SCALARS})
            supervised = final
        figures.update({f"supervised.{key}": supervised[f"supervised_{key}"] for key in SUPERVISED})
        for method in args.methods:
            figures[f"{method}.recovery_vs_supervised"] = (figures[f"{method}.recovery_auroc"]
                                                           / figures["supervised.recovery_auroc"])
        if {"mp", "topk"} <= set(args.methods):
            figures["mp_vs_topk.fvu_ratio"] = figures["mp.fvu"] / figures["topk.fvu"]
        return figures

    figures = {"data.train_size": args.train_size, "data.test_size": args.test_size, "data.image_size": args.image_size,
               "settings.atoms": args.atoms, "settings.k": args.k, "settings.kmeans_k": 1, "settings.epochs": args.epochs,
               "settings.min_cover": args.min_cover, "settings.backbone": "lite0", "settings.layer": args.layer,
               **over_worlds(run_one, args.worlds, args.clutter)}
    grid = len(args.worlds) * len(args.clutter) > 1

    def value(key: str) -> float:
        """A figure: its mean over the worlds of a grid, or its one world's value."""
        return figures[f"{key}.mean" if grid else key]

    best = max(args.methods, key=lambda m: value(f"{m}.recovered_fraction"))
    figures["best_recovered.method"], figures["best_recovered.fraction"] = best, value(f"{best}.recovered_fraction")
    if {"mp", "topk"} <= set(args.methods):
        figures["mp_vs_topk.l0"] = [value("mp.l0"), value("topk.l0")]
        figures["mp_vs_topk.mp_reconstructs_better"] = bool(value("mp.fvu") < value("topk.fvu"))
    write_result(args.out, args.quick, {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()})


if __name__ == "__main__":
    main()
