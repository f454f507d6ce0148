"""What every benchmark shares: the command line, the machine description, the JSON result."""

from __future__ import annotations

import sparsex  # first, before torch: its runtime settings (sparsex.runtime) apply to every benchmark

# isort: split
import argparse
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from sparsex import create_dataset
from sparsex.backbones import create_backbone
from sparsex.data.base import save_image_png
from sparsex.explainers.prototypes import explain_checkpoint
from sparsex.features import extract_features
from sparsex.io import write_json
from sparsex.models import load_model


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


def run_folders(args: argparse.Namespace, name: str) -> Path:
    """``<cache>/<name>_runs[_quick]``: the benchmark's run folders, emptied unless ``--resume``."""
    runs = args.cache / (f"{name}_runs_quick" if args.quick else f"{name}_runs")
    if runs.exists() and not args.resume:
        shutil.rmtree(runs)
    return runs


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
    (any of the 6 part slots), beside the share of feature cells that overlap a part (chance)."""
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
    return {f"{family}.evidence_on_parts": round(on_parts / total, 4),
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
