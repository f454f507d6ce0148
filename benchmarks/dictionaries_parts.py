"""Concept dictionaries on frozen Lite0 features of the part world, graded on the ground truth.

Every method (TopK, BatchTopK, JumpReLU and matching-pursuit SAEs, semi-NMF, PCA, ICA, k-means) is
trained with ``sparsex train dictionary`` (:func:`sparsex.train.dictionary.train_dictionary`) on the
same cached features, at the same dictionary size ``--atoms`` and the same target mean L0 ``--k``
(k-means codes one centre per patch, so its L0 is 1), and graded on the test split beside the
supervised dictionary (the ceiling): concept recovery (mean best-atom AUROC, the share of concepts
with AUROC >= 0.9, and as a fraction of the supervised dictionary's), purity, FVU, measured L0, dead
atoms, control success and training time on cached features. MP-SAE vs TopK SAE at equal L0 is
reported under ``mp_vs_topk``.

    python benchmarks/dictionaries_parts.py --out RESULT.json [--quick] [--resume]

Part-world images at ``--image-size`` (128) px, fed to Lite0 at its own input size (224), features of
its last block (``--layer 4``: a 7 x 7 grid of 320 channels, before the 1280-channel head convolution,
which would make every fit four times dearer on a CPU); one sample per feature-map cell. Features are cached in ``--cache``
(default ``benchmarks/.cache``); run folders go to ``<cache>/dictionaries_runs[_quick]``.
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import math

from _common import parse_run_args, run_folders, write_result

from sparsex.dictionaries import METHODS
from sparsex.train.dictionary import DictionaryTrainConfig, train_dictionary

SCALARS = ("recovery_auroc", "recovered_fraction", "recovery_f1", "purity", "unmatched", "fvu", "l0", "dead", "control",
           "control_edits", "train_s")


def options(parser) -> None:
    parser.add_argument("--train-size", type=int, default=400, help="part-world train images (default 400)")
    parser.add_argument("--test-size", type=int, default=160, help="part-world test images (default 160)")
    parser.add_argument("--image-size", type=int, default=128, help="part-world image side in pixels (default 128)")
    parser.add_argument("--atoms", type=int, default=64, help="dictionary size of every method (default 64)")
    parser.add_argument("--k", type=int, default=4, help="target mean L0 of every method but k-means (default 4)")
    parser.add_argument("--epochs", type=int, default=20, help="SAE training epochs (default 20)")
    parser.add_argument("--layer", type=int, default=4, help="Lite0 feature layer (default 4: 320 channels, stride 32)")
    parser.add_argument("--min-cover", type=float, default=0.05, help="patch coverage for a concept (default 0.05)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to run (default all)")


def main() -> None:
    args = parse_run_args(__doc__, extra=options)
    if args.quick:
        args.train_size, args.test_size, args.atoms, args.k, args.epochs = 48, 24, 32, 4, 3
    runs = run_folders(args, "dictionaries")
    data_options = {"image_size": args.image_size, "train_size": args.train_size, "test_size": args.test_size}
    common = {"data": "parts", "data_options": data_options, "backbone": "lite0", "layer": args.layer, "atoms": args.atoms,
              "epochs": args.epochs,
              "min_cover": args.min_cover, "cache_dir": str(args.cache / "features"), "batch_size": 256}
    figures = {"data.train_size": args.train_size, "data.test_size": args.test_size, "data.image_size": args.image_size,
               "settings.atoms": args.atoms, "settings.k": args.k, "settings.kmeans_k": 1, "settings.epochs": args.epochs,
               "settings.min_cover": args.min_cover, "settings.backbone": "lite0", "settings.layer": args.layer}
    supervised = None
    for method in args.methods:
        config = DictionaryTrainConfig.from_dict({**common, "method": method, "k": 1 if method == "kmeans" else args.k})
        final = train_dictionary(config, runs / method, progress=not args.quick)
        figures.update({f"{method}.{key}": final[key] for key in SCALARS})
        supervised = final
    figures.update({f"supervised.{key}": supervised[f"supervised_{key}"]
                    for key in ("recovery_auroc", "recovered_fraction", "recovery_f1", "purity", "unmatched", "control")})
    for method in args.methods:
        figures[f"{method}.recovery_vs_supervised"] = figures[f"{method}.recovery_auroc"] / figures["supervised.recovery_auroc"]
    best = max(args.methods, key=lambda m: figures[f"{m}.recovered_fraction"])
    figures["best_recovered.method"], figures["best_recovered.fraction"] = best, figures[f"{best}.recovered_fraction"]
    if {"mp", "topk"} <= set(args.methods):
        figures["mp_vs_topk.l0"] = [figures["mp.l0"], figures["topk.l0"]]
        figures["mp_vs_topk.fvu_ratio"] = figures["mp.fvu"] / figures["topk.fvu"]
        figures["mp_vs_topk.mp_reconstructs_better"] = bool(figures["mp.fvu"] < figures["topk.fvu"])
    write_result(args.out, args.quick, {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()})


if __name__ == "__main__":
    main()
