"""``sparsex analyze dictionary RUN``: the report page of a dictionary run.

Written atomically into ``<run>/analysis`` (or ``out``):

- ``report.md``: the run's test figures (FVU, L0, dead atoms; where graded concept recovery,
  purity, unmatched atoms and control beside the supervised dictionary's), the concept-recovery
  table (per concept: best atom, its AUROC and F1, the supervised atom's AUROC and F1) and the
  controls;
- ``galleries.png``: for the shown atoms (the best atoms of the concepts where graded, else the
  most often active), the test images of their most active patches with the atom's code over the
  image as a heat map and the patch outlined;
- ``atom_concept.png`` (graded runs): the AUROC of every atom for every concept, atoms ordered by
  their best concept;
- ``analysis.json``: the figures above as JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..backbones import create_backbone
from ..checkpoint import checkpoint_dir, load_checkpoint
from ..checks import check_int
from ..data import create_dataset
from ..errors import CheckpointError
from ..features import extract_features
from ..io import atomic_dir, atomic_file, check_output_dir, read_json, write_json
from ..viz.latents import _as_display, _save, heatmap_figure
from .concepts import concept_names
from .evaluate import cache_samples, check_cache_backbone
from .methods import Dictionary

FAMILY = "dictionary"
SUMMARY_KEYS = ("fvu", "l0", "dead", "train_s", "recovery_auroc", "recovery_f1", "recovered_fraction", "recovered_distinct", "purity", "unmatched",
                "control", "control_edits", "variant_control", "variant_control_edits")


def analyze_dictionary(run: str | os.PathLike, out: str | os.PathLike | None = None, gallery_atoms: int = 8,
                       gallery_size: int = 6, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the report of the dictionary run folder ``run`` (see the module) and return its folder."""
    check_int(gallery_atoms, "gallery atoms", 1)
    check_int(gallery_size, "gallery size", 1)
    checkpoint = load_checkpoint(run, family=FAMILY)
    run_dir = checkpoint_dir(run).parent
    if not (run_dir / "metrics.json").is_file():
        raise CheckpointError(f"{run} is not a dictionary run folder (no metrics.json beside its checkpoint)")
    metrics = read_json(run_dir / "metrics.json", "run metrics")["final"]
    out = Path(out) if out is not None else run_dir / "analysis"
    check_output_dir(out, overwrite)
    config = checkpoint.config
    dictionary = checkpoint.load_into(Dictionary(**config["model"]))
    data = config["data"]
    test_set = create_dataset(data["name"], split="test", root=data["root"], **data["options"])
    backbone = create_backbone(**config["backbone"])
    test, _ = extract_features(test_set, backbone, config["cache_dir"], progress=progress)
    check_cache_backbone(test, config["backbone_info"])
    codes = dictionary.encode(cache_samples(test, config["pooled"]))
    grid = (1, 1) if config["pooled"] else tuple(test.features.shape[2:])
    graded = "concepts" in metrics
    shown = _shown_atoms(metrics, codes, gallery_atoms)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        gallery = gallery_figure(dictionary, codes, grid, test_set, shown, gallery_size, tmp / "galleries.png",
                                 labels=_atom_labels(metrics, shown))
        if graded:
            matrix = np.array(metrics["concepts"]["auroc_matrix"], dtype=float).T  # (K, N)
            order = np.argsort(np.nan_to_num(matrix, nan=0.0).argmax(0), kind="stable")
            heatmap_figure(matrix[:, order], tmp / "atom_concept.png", concept_names(),
                           title=f"AUROC of every atom (ordered by best concept) for every concept: {dictionary.method}",
                           xlabel="atom (sorted)", vmin=0.5, vmax=1.0, colorbar_label="AUROC")
        with atomic_file(tmp / "report.md") as f:
            f.write(report_markdown(config, metrics, graded))
        write_json(tmp / "analysis.json", {"checkpoint": str(checkpoint.path), "metrics": {k: metrics.get(k) for k in
                                           SUMMARY_KEYS if k in metrics}, "gallery": gallery})
    return out


def _shown_atoms(metrics: dict[str, Any], codes: torch.Tensor, count: int) -> list[int]:
    if "concepts" in metrics:
        ranked = sorted(range(len(metrics["concepts"]["best_atom"])), key=lambda c: -np.nan_to_num(
            metrics["concepts"]["best_auroc"][c], nan=-1.0))
        atoms = list(dict.fromkeys(metrics["concepts"]["best_atom"][c] for c in ranked))
    else:
        atoms = (codes != 0).sum(0).argsort(descending=True).tolist()
    return atoms[:count]


def _atom_labels(metrics: dict[str, Any], atoms: list[int]) -> list[str]:
    if "concepts" not in metrics:
        return [f"atom {a}" for a in atoms]
    names = concept_names()
    best = metrics["concepts"]["best_atom"]
    return [f"atom {a}\n" + ", ".join(names[c] for c, b in enumerate(best) if b == a)[:40] for a in atoms]


def gallery_figure(dictionary: Dictionary, codes: torch.Tensor, grid: tuple[int, int], dataset, atoms: list[int],
                   size: int, out: Path, labels: list[str]) -> dict[str, list[int]]:
    """The top-``size`` patches of every atom: their images, the atom's code map over them, the patch
    outlined. Returns ``{atom: [patch index, ...]}``."""
    per_image = grid[0] * grid[1]
    maps = codes.abs().view(-1, grid[0], grid[1], codes.shape[1])
    fig = Figure(figsize=(1.3 * size + 1.6, 1.35 * len(atoms) + 0.6))
    axes = fig.subplots(len(atoms), size, squeeze=False)
    shown: dict[str, list[int]] = {}
    for row, atom in enumerate(atoms):
        top = codes[:, atom].abs().argsort(descending=True)[:size].tolist()
        shown[str(atom)] = top
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(top) or float(codes[top[col], atom]) == 0:
                continue
            image_index, cell = divmod(top[col], per_image)
            image = dataset[image_index]["image"]
            heat = F.interpolate(maps[image_index, None, None, :, :, atom], size=image.shape[1:], mode="bilinear",
                                 align_corners=False)[0, 0]
            ax.imshow(_as_display(image), cmap="gray")
            ax.imshow(heat.numpy(), cmap="inferno", alpha=0.45, vmin=0, vmax=max(float(heat.max()), 1e-12))
            cell_h, cell_w = image.shape[1] / grid[0], image.shape[2] / grid[1]
            y, x = divmod(cell, grid[1])
            ax.add_patch(Rectangle((x * cell_w - 0.5, y * cell_h - 0.5), cell_w, cell_h, fill=False, color="cyan", lw=1))
        axes[row, 0].set_ylabel(labels[row], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{dictionary.method}: the most active test patches of each atom (heat: the atom's code)", fontsize=9)
    fig.tight_layout()
    _save(fig, out)
    return shown


def _number(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and value != value) else f"{value:.3g}" \
        if isinstance(value, float) else str(value)


def report_markdown(config: dict[str, Any], metrics: dict[str, Any], graded: bool) -> str:
    model = config["model"]
    lines = [f"# Dictionary report: {model['method']}", "",
             f"{model['atoms']} atoms, k = {model['k']} (mean L0 target), on {config['backbone']['name']} features of "
             f"{config['data']['name']} ({'one sample per image' if config['pooled'] else 'one sample per feature-map cell'}); "
             f"figures on the test split.", "", "| metric | dictionary | supervised |", "| --- | --- | --- |"]
    for key in SUMMARY_KEYS:
        if key in metrics:
            lines.append(f"| {key} | {_number(metrics[key])} | {_number(metrics.get('supervised_' + key))} |")
    lines += ["", "![galleries](galleries.png)", ""]
    if not graded:
        lines += ["No grading: this dataset has no part masks, so there is no ground truth to grade the atoms against "
                  "(reconstruction, sparsity and galleries only).", ""]
        return "\n".join(lines)
    concepts, supervised = metrics["concepts"], metrics["supervised_concepts"]
    lines += ["## Concept recovery", "",
              f"A patch contains a concept when it covers at least {config['min_cover']} of it. Per concept the atom with "
              f"the highest AUROC, its AUROC and best F1; the supervised dictionary's own atom beside it.", "",
              "| concept | best atom | AUROC | F1 | supervised AUROC | supervised F1 |", "| --- | --- | --- | --- | --- | --- |"]
    for c, name in enumerate(concept_names()):
        lines.append(f"| {name} | {concepts['best_atom'][c]} | {_number(concepts['best_auroc'][c])} | "
                     f"{_number(concepts['best_f1'][c])} | {_number(supervised['best_auroc'][c])} | "
                     f"{_number(supervised['best_f1'][c])} |")
    lines += ["", "![atom-to-concept AUROC](atom_concept.png)", "", "## Controls", "",
              f"Swapping one part's variant in a correctly classified test image's activations (the best atom of the old "
              f"variant replaced by that of the new one) moves the frozen linear probe to the class with the new variant in "
              f"{_number(metrics['control'])} of {metrics['control_edits']} edits; the supervised dictionary's edit in "
              f"{_number(metrics['supervised_control'])}. Few classes have a one-slot neighbour, so the variant control asks "
              f"the same of every slot and variant: the slot's own frozen variant probe reads the new variant after "
              f"{_number(metrics['variant_control'])} of {metrics['variant_control_edits']} edits; after the supervised "
              f"dictionary's, {_number(metrics['supervised_variant_control'])}.", ""]
    return "\n".join(lines)
