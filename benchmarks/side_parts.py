"""SIDE vs. its dense baseline InfoDisent on the part world with frozen Lite0 features, plus two
ablations from the paper (ASL vs. BCE pretraining; OCLA lambda 0 vs. 200) and one of sparsex's
additions (the paper's recipe: no presence sparsity, no OCLA margin, no held-out offset).

    python benchmarks/side_parts.py --out RESULT.json [--quick] [--resume] [--worlds 0 1 2] [--clutter 3 6] [--preset parts-fine]
        [--no-ablations] [--prune-sweep A ...] [--pretrain-epochs N] [--infodisent-epochs N]

Features are cached in ``--cache`` (default ``benchmarks/.cache``, reused by later runs); the run
folders go to ``<cache>/side_runs[_quick]``, started afresh unless ``--resume`` (then finished stages are kept). The OCLA-0 run shares SIDE's
first three stages (lambda only enters stage 4): they are copied into its run folder and the run
resumes at calibration; the other SIDE runs share pretraining (and the paper-recipe run pruning)
the same way. Also writes one explanation figure for a test image next to RESULT.json.

Every world of ``--worlds x --clutter`` (of ``--preset``) is run in its own run folders
(``_common.world_runs``); each figure is reported as ``.mean`` / ``.sd`` / ``.worst`` / ``.values``
over the worlds (``_common.over_worlds``), and, for a single world, also under its own key. A preset's world
keeps its own split sizes (``_common.split_sizes``); ``--no-ablations`` trains SIDE and InfoDisent only.
"""

from __future__ import annotations

import json
import time

from _common import (
    add_world_options,
    branch_run,
    explanation_figure,
    over_worlds,
    parse_run_args,
    run_folders,
    split_sizes,
    world_options,
    world_runs,
    write_result,
)

from sparsex.train.infodisent import InfoDisentTrainConfig, train_infodisent
from sparsex.train.side import SIDETrainConfig, train_side

PRUNE_SWEEP = (10,)  # the paper's other pruning budget, measured beside the default A = 7


#: epochs of SIDE's pretraining and of InfoDisent on a preset's worlds, chosen on its validation world (seed 100;
#: benchmarks/README.md, "The fine-grained world"): 120 classes need 30 where the default world's 24 need 10
PRESET_EPOCHS = {"parts-fine": 30}


def benchmark_settings(seed: int, clutter: int | None, preset: str | None, quick: bool) -> tuple[dict, dict, int]:
    """One world's data options (the benchmark's split sizes, or a preset's own: ``_common.split_sizes``), SIDE
    settings and InfoDisent epochs (also those of ``tune_side.py``)."""
    if quick:
        sizes = {"train_size": 96, "test_size": 48}
        settings, epochs = dict(expanded_channels=16, pretrain_epochs=3, finetune_epochs=2, calibrate_epochs=2), 3
    else:
        sizes, epochs = {"train_size": 2400, "test_size": 480}, PRESET_EPOCHS.get(preset, 10)
        settings = dict(expanded_channels=256, pretrain_epochs=epochs, finetune_epochs=10, calibrate_epochs=20)
    return world_options(seed, clutter, preset, split_sizes(sizes, preset, quick)), settings, epochs


def train_dense(base: dict, epochs: int, out) -> dict:
    """SIDE's dense baseline InfoDisent on ``base``'s data and backbone (SIDE's stage epochs left out)."""
    return train_infodisent(InfoDisentTrainConfig(**{k: v for k, v in base.items() if not k.endswith("_epochs")},
                                                  epochs=epochs), out)


def prune_sweep(run, side: dict, budgets) -> dict:
    """SIDE pruned to each budget A of ``budgets`` (its pretraining shared with the main run, ``run(name, shared,
    **overrides)``): ``sweep.prune_k<A>.*`` beside the main run's (``side``, the default A)."""
    default = SIDETrainConfig().prune_k
    sweep = {k: run(f"prune_k{k}", ("1-pretrain",), prune_k=k) for k in budgets if k != default}
    return {f"sweep.prune_k{k}.{key}": metrics[key] for k, metrics in sorted({**sweep, default: side}.items())
            for key in ("accuracy", "local_size", "global_size", "ocla_score")}


def ablations(run, side: dict) -> dict:
    """The paper's two ablations (BCE pretraining, OCLA lambda 0) and the paper's recipe, each a
    ``run(name, shared, **overrides)`` beside the main SIDE run's metrics ``side``."""
    bce = run("bce", stages=("pretrain",), pretrain_loss="bce")
    ocla0 = run("ocla0", ("1-pretrain", "2-prune", "3-finetune"), ocla_lambda=0.0)
    paper = run("paper_recipe", ("1-pretrain", "2-prune"), hoyer_weight=0.0, ocla_margin=0.0,
                stages=("pretrain", "prune", "finetune", "calibrate"))
    figures = {"ablation.bce.zero_weight_fraction": bce["zero_weight_fraction"],
               "ablation.bce.accuracy_after_pretrain": bce["accuracy"],
               "ablation.ocla0.ocla_score": ocla0["ocla_score"], "ablation.ocla200.ocla_score": side["ocla_score"],
               "ablation.ocla0.classes_above_t_histogram": ocla0["classes_above_t_histogram"],
               "ablation.ocla200.classes_above_t_histogram": side["classes_above_t_histogram"]}
    for key in ("accuracy", "local_size", "local_size_all", "global_size", "ocla_score"):
        figures[f"ablation.paper_recipe.{key}"] = paper[key]
    return figures


def main() -> None:
    def options(parser) -> None:
        add_world_options(parser)
        parser.add_argument("--no-ablations", dest="ablations", action="store_false",
                            help="train SIDE and InfoDisent only (no BCE, OCLA-0, paper-recipe or prune-budget runs): "
                                 "for grids of worlds")
        parser.add_argument("--prune-sweep", type=int, nargs="+", metavar="A",
                            help=f"also prune SIDE's pretrained model to each budget A (default: {' '.join(map(str, PRUNE_SWEEP))} "
                                 "with the ablations, none with --no-ablations): sweep.prune_k<A>.* figures")
        parser.add_argument("--pretrain-epochs", type=int, help="SIDE's pretraining epochs (default: 10, parts-fine 30)")
        parser.add_argument("--infodisent-epochs", type=int, help="InfoDisent's epochs (default: 10, parts-fine 30)")

    args = parse_run_args(__doc__, options)
    all_runs = run_folders(args, "side")

    def run_one(seed: int, clutter: int | None) -> dict:
        """Every figure of one world."""
        data, settings, infodisent_epochs = benchmark_settings(seed, clutter, args.preset, args.quick)
        if args.pretrain_epochs:
            settings["pretrain_epochs"] = args.pretrain_epochs
        infodisent_epochs = args.infodisent_epochs or infodisent_epochs
        base = dict(data="parts", data_options=data, backbone="lite0", cache_dir=str(args.cache), **settings)
        figures: dict = {"data.train_size": data["train_size"], "data.test_size": data["test_size"],
                         **{f"settings.{k}": v for k, v in settings.items()}, "settings.infodisent_epochs": infodisent_epochs}
        defaults = SIDETrainConfig()
        figures["settings.prune_k"] = defaults.prune_k
        figures["settings.hoyer_weight"], figures["settings.ocla_margin"] = defaults.hoyer_weight, defaults.ocla_margin
        runs = world_runs(all_runs, seed, clutter, args.preset)
        timings = {}

        def run(name: str, shared: tuple[str, ...] = (), **overrides):
            """A SIDE run of ``base`` with ``overrides``; with ``shared`` stages, those are the main run's
            (``overrides`` only act later)."""
            start = time.perf_counter()
            config = SIDETrainConfig(**{**base, **overrides})
            result = (branch_run(train_side, config, runs / "side", runs / name, shared) if shared
                      else train_side(config, runs / name))
            timings[name] = round(time.perf_counter() - start, 1)
            return result

        start = time.perf_counter()
        infodisent = train_dense(base, infodisent_epochs, runs / "infodisent")
        timings["infodisent"] = round(time.perf_counter() - start, 1)
        side = run("side")
        side_stages = {m["stage"]: m for m in json.loads((runs / "side" / "metrics.json").read_text())["stages"]}
        figure_out = args.out if runs == all_runs else args.out.with_name(f"{args.out.stem}_{runs.name}{args.out.suffix}")
        figures.update(explanation_figure(runs, "side", data, figure_out, "side"))

        for prefix, metrics in (("side", side), ("infodisent", infodisent)):
            for key in ("accuracy", "local_size", "local_size_all", "global_size", "ocla_score", "zero_weight_fraction"):
                figures[f"{prefix}.{key}"] = metrics[key]
        figures["side.classes_above_t_histogram"] = side["classes_above_t_histogram"]
        if "offset" in side_stages:  # the held-out logit shift, and the OCLA figures the calibration left it
            calibrated = side_stages["calibrate"]
            figures["side.offset"] = side_stages["offset"]["offset"]
            figures["side.before_offset.ocla_score"] = calibrated["ocla_score"]
            figures["side.before_offset.classes_above_t_histogram"] = calibrated["classes_above_t_histogram"]
        figures["ablation.asl.zero_weight_fraction"] = side_stages["pretrain"]["zero_weight_fraction"]
        figures["ablation.asl.accuracy_after_pretrain"] = side_stages["pretrain"]["accuracy"]
        if args.ablations:
            figures.update(ablations(run, side))
        budgets = args.prune_sweep if args.prune_sweep is not None else PRUNE_SWEEP if args.ablations else ()
        if budgets:
            figures.update(prune_sweep(run, side, budgets))
        figures["accuracy_gap.side_minus_infodisent"] = round(side["accuracy"] - infodisent["accuracy"], 4)
        figures.update({f"time_s.{k}": v for k, v in timings.items()})
        return figures

    write_result(args.out, args.quick, over_worlds(run_one, args.worlds, args.clutter))


if __name__ == "__main__":
    main()
