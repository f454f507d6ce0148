"""Class-aligned VSC vs. plain VSC on real Fashion-MNIST (the check of arXiv 2505.14476).

    python benchmarks/vsc_fashion.py --out RESULT.json [--quick] [--resume]

Two runs with the same seed, epochs and class-balanced batches, differing only in the weight of
the class-alignment loss: lambda = 0 (plain VSC) and the default lambda. Both are measured on the
test split (reconstruction BCE per image, active dimensions per sample, mean within-class JSD,
linear-probe accuracy on gamma, class correlation matrix), and the aligned run is analysed
(`sparsex analyze vsc`): its traversal, correlation and gamma heat-map figures are copied next to
RESULT.json as ``<stem>_traversals.png``, ``<stem>_correlation.png`` and ``<stem>_gamma_heatmap.png``.

The issue's acceptance checks are written out as ``check.*``: the aligned within-class JSD at most
half of plain VSC's, its BCE at most 5% higher, and the footwear classes (Sandal, Sneaker, Ankle
boot) correlating more with each other than with the other classes on average.
Run folders go to ``<cache>/vsc_runs[_quick]`` (``--cache``, default ``benchmarks/.cache``),
started afresh unless ``--resume``.
"""

from __future__ import annotations

import shutil
import time

from _common import parse_run_args, run_folders, write_result

from sparsex.analysis.vsc import analyze_vsc
from sparsex.metrics.latent import group_correlation
from sparsex.train.vsc import VSCTrainConfig, train_vsc

FOOTWEAR = ["Sandal", "Sneaker", "Ankle boot"]
KEYS = ("bce", "bce_code", "kl", "active_dims", "jsd_within", "probe_accuracy", "dims_global", "dims_class_specific",
        "dims_unused")


def main() -> None:
    args = parse_run_args(__doc__)
    if args.quick:
        settings = dict(data_options={"limit": 2000}, latent_dim=16, hidden_dim=64, epochs=2, batch_size=100,
                        warmup_epochs=1.0, probe_max_iter=100)
    else:
        settings = dict(epochs=VSCTrainConfig().epochs)
    base = dict(data="fashion-mnist", **settings)
    default_lambda = VSCTrainConfig().lambda_jsd
    figures: dict = {f"settings.{k}": v for k, v in settings.items() if k != "data_options"}
    figures.update({"settings.lambda_jsd": default_lambda, "settings.alpha": VSCTrainConfig().alpha,
                    "settings.latent_dim": settings.get("latent_dim", VSCTrainConfig().latent_dim),
                    "data.limit": settings.get("data_options", {}).get("limit")})
    runs = run_folders(args, "vsc")
    timings = {}
    start_all = time.perf_counter()
    results = {}
    for name, lam in (("vsc", 0.0), ("aligned", default_lambda)):
        start = time.perf_counter()
        results[name] = train_vsc(VSCTrainConfig(**base, lambda_jsd=lam), runs / name)
        timings[name] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    analysis = analyze_vsc(runs / "aligned", runs / "aligned_analysis", overwrite=True)
    timings["analysis"] = round(time.perf_counter() - start, 1)
    timings["total"] = round(time.perf_counter() - start_all, 1)

    for name, metrics in results.items():
        for key in KEYS:
            figures[f"{name}.{key}"] = metrics[key]
        footwear = group_correlation(metrics["correlation_matrix"], metrics["classes"], FOOTWEAR)
        figures[f"{name}.footwear_corr_within"] = round(footwear["within"], 4)
        figures[f"{name}.footwear_corr_across"] = round(footwear["across"], 4)
        figures[f"{name}.correlation_matrix"] = metrics["correlation_matrix"]
    figures["classes"] = results["aligned"]["classes"]
    vsc, aligned = results["vsc"], results["aligned"]
    figures["ratio.jsd_aligned_over_vsc"] = round(aligned["jsd_within"] / vsc["jsd_within"], 4)
    figures["ratio.bce_aligned_over_vsc"] = round(aligned["bce"] / vsc["bce"], 4)
    figures["check.jsd_at_most_half"] = aligned["jsd_within"] <= 0.5 * vsc["jsd_within"]
    figures["check.bce_at_most_5pct_higher"] = aligned["bce"] <= 1.05 * vsc["bce"]
    figures["check.footwear_closer_together"] = (figures["aligned.footwear_corr_within"]
                                                 > figures["aligned.footwear_corr_across"])
    copies = (("traversals", "traversals"), ("class_correlation", "correlation"), ("gamma_heatmap", "gamma_heatmap"))
    for figure, target in copies:
        path = args.out.with_name(f"{args.out.stem}_{target}.png")
        shutil.copy(analysis / f"{figure}.png", path)
        figures[f"figure.{target}"] = str(path)
    figures.update({f"time_s.{k}": v for k, v in timings.items()})
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
