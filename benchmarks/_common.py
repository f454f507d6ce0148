"""What every benchmark shares: the command line, the machine description, the JSON result."""

from __future__ import annotations

import sparsex  # first, before torch: its runtime settings (sparsex.runtime) apply to every benchmark

# isort: split
import argparse
import itertools
import math
import numbers
import os
import platform
import shlex
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from sparsex import create_dataset
from sparsex.backbones import create_backbone
from sparsex.data.base import save_image_png
from sparsex.explainers.prototypes import explain_checkpoint
from sparsex.features import extract_features
from sparsex.io import write_json
from sparsex.metrics.registry import metric_info
from sparsex.models import load_model
from sparsex.partworld import PRESETS
from sparsex.train.run import RunFolder


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], Any] | None = None) -> argparse.Namespace:
    """``--out RESULT.json`` and ``--quick``; ``extra(parser)`` may add a benchmark's own options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write the figures to")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (a couple of minutes)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


CACHE = Path(__file__).resolve().parent / ".cache"


def parse_run_args(description: str, extra: Callable[[argparse.ArgumentParser], Any] | None = None) -> argparse.Namespace:
    """:func:`parse_args` plus ``--resume`` and ``--cache`` for benchmarks that train in run folders
    (and ``extra(parser)``'s own options)."""

    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--resume", action="store_true", help="keep finished stages from an earlier, interrupted run")
        parser.add_argument("--cache", type=Path, default=CACHE, help="folder for feature caches and run folders")
        if extra is not None:
            extra(parser)

    return parse_args(description, extra=options)


def add_world_options(parser: argparse.ArgumentParser, default_worlds: Sequence[int] = (0,),
                      default_clutter: Sequence[int | None] = (None,)) -> None:
    """``--worlds`` (part-world seeds), ``--clutter`` (``max_clutter`` levels) and ``--preset`` (a
    part-world preset, e.g. ``parts-fine``): the grid of worlds :func:`over_worlds` runs over."""
    parser.add_argument("--worlds", type=int, nargs="+", default=list(default_worlds), metavar="SEED",
                        help=f"part-world seeds (default: {' '.join(map(str, default_worlds))})")
    clutter = "the world's own, 3 or the preset's" if list(default_clutter) == [None] else " ".join(map(str, default_clutter))
    parser.add_argument("--clutter", type=int, nargs="+", default=list(default_clutter), metavar="N",
                        help=f"max_clutter levels (default: {clutter})")
    parser.add_argument("--preset", default=None, help="part-world preset, e.g. parts-fine (docs/partworld.md)")


def world_options(seed: int, clutter: int | None, preset: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Part-world data options: ``options`` (sizes, image size) for the world ``seed`` at ``max_clutter = clutter``
    (the world's default when None) of ``preset`` (none: the default world). The default world with seed 0 and its
    own clutter gives ``options`` unchanged, so its feature caches and run folders are those of before."""
    world = {**options, **({"preset": preset} if preset else {}), **({"seed": seed} if seed else {})}
    return {**world, **({"max_clutter": clutter} if clutter is not None else {})}


def split_sizes(sizes: dict[str, int], preset: str | None, quick: bool) -> dict[str, int]:
    """The split sizes of a benchmark's worlds: ``sizes`` (the default world's) for the default world and quick runs,
    a preset's own sizes for a preset's world (``parts-fine``: 40 / 10 / 10 images per class for 120 classes; the
    default world's 2400 / 480 would leave it 20 / 4)."""
    if quick or preset is None:
        return sizes
    return {key: PRESETS[preset].get(key, value) for key, value in sizes.items()}


def world_name(seed: int, clutter: int | None) -> str:
    """``seed<S>`` or ``seed<S>_clutter<N>``: a folder name for one world of the grid."""
    return f"seed{seed}" + ("" if clutter is None else f"_clutter{clutter}")


def world_runs(runs: Path, seed: int, clutter: int | None, preset: str | None) -> Path:
    """The run folders of one world of the grid: ``runs`` itself for the default world (seed 0, its own clutter, no
    preset; where they were before the grid), else ``runs/<preset or parts>_<world_name>``."""
    if (seed, clutter, preset) == (0, None, None):
        return runs
    return runs / f"{preset or 'parts'}_{world_name(seed, clutter)}"


def lower_is_better(key: str) -> bool | None:
    """Whether figure ``key``'s worst case is its maximum: the metric registry's direction of its last dotted
    component, else True for sizes and times (names with ``size``, ``time_s``, ``seconds``), else None (no worst)."""
    higher = metric_info(key.rsplit(".", 1)[-1]).higher_is_better
    if higher is not None:
        return not higher
    return True if any(word in key for word in ("size", "time_s", "seconds")) else None


def over_worlds(run_one: Callable[[int, int | None], dict[str, Any]], worlds: Sequence[int], clutters: Sequence[int | None],
                prefix: str = "") -> dict[str, Any]:
    """Run ``run_one(seed, clutter)`` on every world of ``worlds x clutters`` and aggregate its figures.

    For every numeric figure ``k`` (``prefix.k`` with a ``prefix``): ``k.mean``, ``k.sd`` (the sample standard
    deviation, ``sqrt(sum (x - mean)^2 / (n - 1))``; 0 for one world), ``k.worst`` (the maximum where
    :func:`lower_is_better`, e.g. sizes; the minimum where higher is better, e.g. accuracy, OCLA; left out where
    the figure has no direction) and ``k.values`` (one per world, in grid order). Figures under ``settings.`` /
    ``data.`` and non-numeric ones (histograms, paths) are kept from the first world as they are. With one world
    every figure is also kept under its own key, as before the grid. ``worlds`` and ``clutter`` list the grid.
    A figure missing from some world is aggregated over the worlds that have it."""
    runs = [run_one(seed, clutter) for seed in worlds for clutter in clutters]
    name = (prefix + ".") if prefix else ""
    figures: dict[str, Any] = {f"{name}worlds": list(worlds), f"{name}clutter": list(clutters)}
    if len(runs) == 1:
        figures.update({name + k: v for k, v in runs[0].items()})
    for key in dict.fromkeys(k for run in runs for k in run):
        values = [run[key] for run in runs if key in run]
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if key.startswith(("settings.", "data.")) or not numeric:
            figures.setdefault(name + key, values[0])
            continue
        figures[f"{name}{key}.mean"] = statistics.fmean(values)
        figures[f"{name}{key}.sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        lower = lower_is_better(key)
        if lower is not None:
            figures[f"{name}{key}.worst"] = max(values) if lower else min(values)
        figures[f"{name}{key}.values"] = values
    return figures


def choose_setting(figures: dict[str, Any], settings: Sequence[dict[str, Any]], setting_name: Callable[[dict], str]) -> dict[str, Any]:
    """A tuning grid's choice (``tune_side.py``, ``tune_protosvit.py``): each setting's worst slack over the
    validation worlds (``grid.<name>.slack.values``, :func:`over_worlds`; a slack is >= 0 where every check is
    met), and the setting with the largest. Returns ``worst_slack.<name>``, ``chosen.<setting key>``,
    ``chosen.worst_slack`` and ``chosen.meets_every_check``; ties go to the earlier setting of ``settings``."""
    worst = {setting_name(s): min(figures[f"grid.{setting_name(s)}.slack.values"]) for s in settings}
    chosen = max(settings, key=lambda s: worst[setting_name(s)])
    return {**{f"worst_slack.{name}": value for name, value in worst.items()},
            **{f"chosen.{key}": value for key, value in chosen.items()},
            "chosen.worst_slack": worst[setting_name(chosen)], "chosen.meets_every_check": worst[setting_name(chosen)] >= 0}


def tune_over_worlds(args: argparse.Namespace, grid: dict[str, Sequence[Any]], setting_name: Callable[[dict], str],
                     run_one: Callable[[int, int | None, list[dict[str, Any]]], dict[str, Any]]) -> dict[str, Any]:
    """A tuning script's run: every setting of ``grid`` (the product of its values), ``run_one(seed, clutter,
    settings)`` on every validation world of ``args`` (:func:`over_worlds`), the choice (:func:`choose_setting`),
    the JSON written to ``args.out``."""
    settings = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    figures = over_worlds(lambda seed, clutter: run_one(seed, clutter, settings), args.worlds, args.clutter)
    figures.update(choose_setting(figures, settings, setting_name))
    return write_result(args.out, args.quick, figures)


def branch_run(train: Callable[..., dict[str, Any]], config: Any, source: Path, target: Path,
               shared: Sequence[str]) -> dict[str, Any]:
    """Train ``config`` in ``target`` whose first stages (``shared``, stage folder names such as
    ``1-pretrain``) equal those of the run in ``source``: copy those stage checkpoints in, then
    resume (a run folder resumes after its last finished stage)."""
    RunFolder(target, config.to_dict(), list(config.stages))
    for stage in shared:
        shutil.copytree(source / "stages" / stage, target / "stages" / stage, dirs_exist_ok=True)
    return train(config, target)


def run_folders(args: argparse.Namespace, name: str) -> Path:
    """``<cache>/<name>_runs[_quick]``: the benchmark's run folders, emptied unless ``--resume``."""
    runs = args.cache / (f"{name}_runs_quick" if args.quick else f"{name}_runs")
    if runs.exists() and not args.resume:
        shutil.rmtree(runs)
    return runs


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Cores, torch version, device and platform of the machine the benchmark ran on."""
    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "sparsex_runtime": sparsex.runtime.APPLIED or ["none (SPARSEX_TUNE=0, or the user's own settings)"],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        # the vector instructions torch's CPU kernels use (e.g. AVX512, AVX2): another set sums floats in another
        # order, so a run repeats exactly only on the same capability (and thread count)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def write_result(out: Path, quick: bool, figures: dict[str, Any]) -> dict[str, Any]:
    """Write one flat JSON object: command, machine, quick, then the dotted figures; print it."""
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "machine": machine_info(),
              "quick": quick, **figures}
    write_json(out, result)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return result


@torch.no_grad()
def evidence_on_parts(checkpoint: Path, data: dict, family: str) -> dict:
    """Where a prototype head's evidence sits: over the part-world test split, the share of the predicted class's
    prototype evidence ``sum_p s_p W[yhat, p]`` whose arg-max feature cell overlaps a part mask
    (any of the 6 part slots), beside the share of feature cells that overlap a part (chance); None where the model
    gives no evidence at all (a collapsed head that abstains on every image)."""
    head, ck = load_model(checkpoint, family=family)
    world = create_dataset("parts", split="test", **data)
    cache, _ = extract_features(world, create_backbone(**ck.config["backbone"]), ck.config["cache_dir"], progress=False)
    out = head(cache.features)
    weights = head.class_weights()
    h, w = out.maps.shape[-2:]
    on_parts = total = cells_on = 0.0
    for n in range(len(world)):
        masks = world[int(cache.indices[n])]["part_masks"].any(0).float()[None, None]
        cell_has_part = F.adaptive_max_pool2d(masks, (h, w)).flatten() > 0  # (h*w,)
        evidence = out.scores[n] * weights[out.logits[n].argmax()]
        on_parts += evidence[cell_has_part[out.locations[n]]].sum().item()
        total += evidence.sum().item()
        cells_on += cell_has_part.float().mean().item()
    return {f"{family}.evidence_on_parts": round(on_parts / total, 4) if total > 0 else None,
            f"{family}.cells_on_parts_chance": round(cells_on / len(world), 4)}


def explanation_figure(runs: Path, run: str, data: dict, out: Path, family: str) -> dict:
    """Explain the first part-world test image with the run ``runs/run``; copy its figure next to
    ``out`` as ``<out stem>_explanation.png``; return that path and :func:`evidence_on_parts`."""
    test_image = runs / "test_image.png"
    save_image_png(create_dataset("parts", split="test", **data)[0]["image"], test_image)
    explanation = explain_checkpoint(runs / run, test_image, runs / "explanation", overwrite=True)
    figure = out.with_name(out.stem + "_explanation.png")
    shutil.copy(explanation / "explanation.png", figure)
    return {"explanation_figure": str(figure), **evidence_on_parts(runs / run / "checkpoint", data, family)}
