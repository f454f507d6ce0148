"""Analyses of a trained VSC model (plain or class-aligned): what its latent dimensions mean.

:func:`analyze_vsc` writes, into one folder:

- ``traversals.png``: for each chosen latent dimension, a grid whose rows are classes (a test image
  of that class, encoded to its deterministic code ``mu * [gamma > 0.5]``) and whose columns set
  that dimension to values from ``-span`` to ``span`` (switched on) before decoding;
- ``gamma_heatmap.png``: the class x dimension heat map of mean spike probability gamma;
- ``class_correlation.png``: the Pearson correlation matrix between class-mean gamma vectors;
- ``reconstructions.png``: test images (one per class) above their reconstructions;
- ``dimensions.md``: each dimension classified as global (active for every class), class-specific
  (active for some, named) or unused (:func:`sparsex.metrics.latent.classify_dimensions`);
- ``analysis.json``: the metrics (:func:`sparsex.metrics.latent.latent_metrics`, with the linear
  probe's accuracy on gamma), the class-mean gamma matrix, the correlation matrix, the dimension
  table and the traversal settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..checks import check_int, check_number
from ..errors import InputError
from ..io import atomic_dir, atomic_file, check_output_dir, write_json
from ..metrics.latent import class_mean_gamma, classify_dimensions, latent_metrics, nan_to_none
from ..models import load_model
from ..models.vsc import FAMILY, VSC
from ..train.vsc import VSCTrainConfig, load_image_split
from ..viz.latents import heatmap_figure, image_grid_figure


def choose_dimensions(table: list[dict[str, Any]], max_dims: int = 4) -> list[int]:
    """Dimensions worth traversing, from a :func:`classify_dimensions` table: up to half of
    ``max_dims`` global ones (highest mean gamma first), the rest class-specific ones (fewest
    classes first, then highest mean gamma); filled up by mean gamma when there are too few."""
    global_dims = sorted((r for r in table if r["kind"] == "global"), key=lambda r: -r["mean_gamma"])
    specific = sorted((r for r in table if r["kind"] == "class-specific"), key=lambda r: (len(r["classes"]), -r["mean_gamma"]))
    chosen = [r["dim"] for r in global_dims[: max(1, max_dims // 2)]]
    chosen += [r["dim"] for r in specific[: max_dims - len(chosen)]]
    for r in sorted(table, key=lambda r: -r["mean_gamma"]):
        if len(chosen) >= max_dims:
            break
        if r["dim"] not in chosen:
            chosen.append(r["dim"])
    return chosen[:max_dims]


@torch.no_grad()
def traversal_images(model: VSC, image: torch.Tensor, dim: int, values: Sequence[float]) -> torch.Tensor:
    """Decode the deterministic code of ``image (C, H, W)`` with dimension ``dim`` set to each of
    ``values``; returns ``(len(values), C, H, W)`` in ``[0, 1]``."""
    mu, _, gamma = model.encode(image[None])
    codes = model.code(mu, gamma).repeat(len(values), 1)
    codes[:, dim] = torch.tensor(list(values), dtype=codes.dtype, device=codes.device)
    return torch.sigmoid(model.decode(codes))


def _dimension_table_markdown(table: list[dict[str, Any]], num_classes: int) -> str:
    lines = ["| dim | kind | active for | mean gamma |", "| --- | --- | --- | --- |"]
    order = {"global": 0, "class-specific": 1, "unused": 2}
    used = sorted((r for r in table if r["kind"] != "unused"), key=lambda r: (order[r["kind"]], len(r["classes"]), r["dim"]))
    for r in used:
        active = "all classes" if r["kind"] == "global" else ", ".join(r["classes"])
        lines.append(f"| {r['dim']} | {r['kind']} | {active} | {r['mean_gamma']:.3f} |")
    unused = [str(r["dim"]) for r in table if r["kind"] == "unused"]
    counts = {k: sum(r["kind"] == k for r in table) for k in order}
    summary = (f"{counts['global']} global, {counts['class-specific']} class-specific, {counts['unused']} unused "
               f"of {len(table)} dimensions ({num_classes} classes; active for a class: class-mean gamma > 0.5).")
    if unused:
        summary += f" Unused: {', '.join(unused)}."
    return "\n".join(lines) + "\n\n" + summary + "\n"


def _parse_classes(names: Sequence[str] | None, classes: list[str]) -> list[int] | None:
    if not names:
        return None
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise InputError(f"unknown class {unknown[0]!r}; this model's classes: {', '.join(classes)}")
    return [classes.index(n) for n in names]


def analyze_vsc(run: str | os.PathLike, out: str | os.PathLike | None = None, dims: Sequence[int] | None = None,
                classes: Sequence[str] | None = None, steps: int = 7, span: float = 3.0, max_dims: int = 4,
                max_classes: int = 3, overwrite: bool = False, progress: bool = True,
                device: str = "cpu") -> Path:
    """Write the analyses of the module docstring for the VSC run folder (or checkpoint folder)
    ``run`` into ``out`` (default ``<run>/analysis``, written atomically); return ``out``.

    ``dims``: the latent dimensions to traverse (default :func:`choose_dimensions`, ``max_dims``);
    ``classes``: class names shown in every traversal (default: for each dimension the
    ``max_classes`` classes with the highest mean gamma on it). ``steps`` values from ``-span`` to
    ``span``. The data come from the checkpoint's config (same dataset, root and options).
    """
    run = Path(run)
    model, checkpoint = load_model(run, family=FAMILY)
    out = Path(out) if out is not None else (run if checkpoint.path != run else run.parent) / "analysis"
    model = model.to(device)
    check_int(steps, "traversal steps", 2)
    check_number(span, "traversal span", 0, low_open=True)
    if dims is not None:
        for d in dims:
            check_int(d, "latent dimension of this model", 0, model.latent_dim - 1)
    data = checkpoint.config.get("data") or {}
    if data.get("classes"):
        _parse_classes(classes, list(data["classes"]))  # refuse unknown names before loading any data
    check_output_dir(out, overwrite)
    config = VSCTrainConfig(data=data.get("name", "fashion-mnist"), root=data.get("root"),
                            data_options=data.get("options") or {}, device=device)
    train_images, train_labels, class_names = load_image_split(config, "train", progress)
    test_images, test_labels, _ = load_image_split(config, "test", progress)
    model.check_input(test_images[:1].to(device))  # the data must fit the model (size, channels)
    shown = _parse_classes(classes, class_names)

    test_gamma = model.encode_all(test_images, device=device)
    train_gamma = model.encode_all(train_images, device=device)
    training = checkpoint.config.get("training") or {}
    metrics = latent_metrics(test_gamma, test_labels, class_names, train_gamma=train_gamma, train_labels=train_labels,
                             seed=int(training.get("seed", 0)))
    means = class_mean_gamma(test_gamma, test_labels, len(class_names))
    table = classify_dimensions(means, class_names)
    dims = list(dims) if dims is not None else choose_dimensions(table, max_dims)
    values = [-span + 2 * span * i / (steps - 1) for i in range(steps)]
    first_of = {c: int((test_labels == c).nonzero()[0]) for c in range(len(class_names)) if (test_labels == c).any()}

    with atomic_dir(out, overwrite=overwrite) as tmp:
        blocks = []
        for d in dims:
            rows = shown if shown is not None else [int(c) for c in means[:, d].argsort(descending=True)[:max_classes]]
            rows = [c for c in rows if c in first_of]
            kind = table[d]["kind"]
            grid = torch.stack([traversal_images(model, test_images[first_of[c]].to(device), d, values).cpu() for c in rows])
            blocks.append((f"dim {d} ({kind})", [class_names[c] for c in rows], grid))
        image_grid_figure(blocks, tmp / "traversals.png", column_labels=[f"{v:+.1f}" for v in values],
                          title="latent traversals: one dimension set to each value, the rest of the code kept")
        heatmap_figure(means, tmp / "gamma_heatmap.png", class_names, title="mean spike probability gamma per class",
                       xlabel="latent dimension", vmin=0, vmax=1, colorbar_label="mean gamma")
        heatmap_figure(torch.tensor([[float("nan") if v is None else v for v in row] for row in metrics["correlation_matrix"]]),
                       tmp / "class_correlation.png", class_names, column_labels=class_names,
                       title="Pearson correlation of class-mean gamma vectors", cmap="RdBu_r", vmin=-1, vmax=1,
                       annotate=True, colorbar_label="r")
        samples = [first_of[c] for c in sorted(first_of)]
        with torch.no_grad():
            recon = model(test_images[samples].to(device)).recon.cpu()
        image_grid_figure([("", ["input", "reconstruction"], torch.stack([test_images[samples], recon]))],
                          tmp / "reconstructions.png", column_labels=[class_names[int(test_labels[i])] for i in samples],
                          title="test images and their reconstructions (deterministic code)")
        with atomic_file(tmp / "dimensions.md") as f:
            f.write(_dimension_table_markdown(table, len(class_names)))
        write_json(tmp / "analysis.json", {
            "checkpoint": str(checkpoint.path), "metrics": metrics, "classes": class_names,
            "class_mean_gamma": nan_to_none(means), "dimensions": table,
            "traversal": {"dims": dims, "values": values, "classes": None if shown is None else list(classes)},
        })
    return out
