"""Explaining image files with any classifier: what ``sparsex explain attributions`` does.

:func:`explain_files` takes a model spec (a sparsex run, ``timm:NAME``, ``torchvision:NAME``,
``lite0-imagenet``: :func:`sparsex.load_classifier`), one image file or a folder of them (searched
recursively; any format Pillow reads; grey-scale and alpha converted to the model's channels, then
resized and centre-cropped as the model's own preprocessing says) and registered explainers, and
writes one folder ``out``::

    out/config.json                    the resolved settings (a rerun must match them)
    out/<image path>/                  one folder per image (its path under the input folder,
                                       without the suffix), written atomically:
        image.png                      the model's input (after resize and crop)
        maps.safetensors               each explainer's map (H, W), float32
        <explainer>.png                the map over the image, titled with the class and its probability
        grid.png                       the image and every explainer's map, side by side
        explanation.json               top-3 predictions, the explained class, each explainer's
                                       flags and (``score``) its scores
    out/scores.csv, out/metrics.json   with ``score``: deletion / insertion AUC and sufficiency per
                                       image and explainer, and their means; metrics.json also
                                       counts the images done and names the files skipped

A rerun with the same settings skips the images already done (their folders exist) and rewrites
only the summary. A file that is not a readable image is skipped with a warning that names it and
counted; nothing else is lost. A map that is a binary mask (a mask explainer's) is checked:
an empty mask, or one whose explanation ``m x + (1 - m) blur(x)`` does not keep the class, is
flagged as such (``explanation.json``, the figure's title) and never presented as an explanation.

Scores (``sparsex.metrics.faithfulness``, for the explained class): deletion and insertion AUC
(``auc_steps`` steps; the blurred image as the baseline) and sufficiency: whether the top
``score_area`` of the pixels by the map (for a binary mask, the mask itself) keeps the class on
the blurred image.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from .checks import check_int, check_number, from_settings
from .data.base import save_image_png
from .data.imagefolder import find_image_files
from .distributed import check_device
from .errors import DataError, OutputExistsError, SparsexError
from .explainers.base import EXPLAINERS, create_explainer
from .inference import DEFAULT_BATCH, class_index, class_names
from .io import atomic_dir, read_json, remove_stale_temps, write_json
from .perturb import blur, composite
from .progress import progress_bar

#: explainers run when none are named
DEFAULT_EXPLAINERS = ("integrated-gradients", "gradcam")
SCORE_COLUMNS = ("image", "explainer", "class", "deletion_auc", "insertion_auc", "sufficiency", "flags")


@dataclass
class ExplainFilesConfig:
    """Settings of :func:`explain_files`: the ``model`` spec and its options (``weights``,
    ``num_classes``, ``image_size``), the ``images`` (a file or a folder), the ``explainers`` and
    their ``explainer_settings`` (name -> settings), the ``target`` class (an index or a name;
    None: each image's predicted class), ``score`` with ``score_area`` and ``auc_steps``, and
    ``batch_size`` images per forward pass on ``device``."""

    model: str = ""
    images: str = ""
    explainers: list[str] = field(default_factory=lambda: list(DEFAULT_EXPLAINERS))
    explainer_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    target: int | str | None = None
    score: bool = False
    score_area: float = 0.1
    auc_steps: int = 20
    batch_size: int = DEFAULT_BATCH
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.model:
            raise SparsexError("explain needs a model (--model SPEC)")
        if not self.images:
            raise SparsexError("explain needs images (--images FILE_OR_FOLDER)")
        if not self.explainers:
            raise SparsexError("explain needs at least one explainer (--explainer NAME[,NAME...])")
        # canonical names (an alias such as "ig" resolves; an unknown name lists the registered ones)
        self.explainers = [EXPLAINERS.get(name).name for name in self.explainers]
        self.explainer_settings = {EXPLAINERS.get(name).name: v for name, v in self.explainer_settings.items()}
        unused = sorted(set(self.explainer_settings) - set(self.explainers))
        if unused:
            raise SparsexError(f"settings given for explainer(s) not run: {', '.join(unused)}")
        check_number(self.score_area, "score_area", 0, 1, low_open=True)
        check_int(self.auc_steps, "auc_steps", 1)
        check_int(self.batch_size, "batch_size", 1)
        check_device(self.device)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "ExplainFilesConfig":
        return from_settings(cls, settings, "explain")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _image_dir(out: Path, base: Path, file: Path) -> Path:
    return out / file.relative_to(base).with_suffix("")


def _open_output(out: Path, config: ExplainFilesConfig, overwrite: bool) -> None:
    """Create ``out`` or reopen it for a rerun with the same settings."""
    stored_file = out / "config.json"
    if out.exists() and any(out.iterdir()):
        remove_stale_temps(out, recursive=True)
        stored = read_json(stored_file, "explanation settings") if stored_file.is_file() else None
        if overwrite:
            shutil.rmtree(out)
        elif stored != json.loads(json.dumps(config.to_dict())):
            what = "is not a sparsex explanation folder" if stored is None else "holds explanations with other settings"
            raise OutputExistsError(f"output folder {out} {what}; pass --overwrite or another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(stored_file, config.to_dict())


def _is_mask(maps: torch.Tensor) -> bool:
    return bool(((maps == 0) | (maps == 1)).all())


def _flags(model: nn.Module, x: torch.Tensor, mask: torch.Tensor, label: int) -> list[str]:
    """Why a binary mask is not an explanation of ``label``: empty, or its explanation loses the class."""
    if not mask.any():
        return ["empty mask"]
    with torch.no_grad():
        kept = int(model(composite(x, mask, blur(x))).argmax(dim=1)) == label
    return [] if kept else ["the mask's explanation loses the class"]


def _scores(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, label: int,
            config: ExplainFilesConfig) -> dict[str, float]:
    from .metrics.faithfulness import deletion_auc, insertion_auc, map_sufficient

    target = torch.tensor([label], device=x.device)
    return {"deletion_auc": float(deletion_auc(model, x, maps, target=target, steps=config.auc_steps)[0]),
            "insertion_auc": float(insertion_auc(model, x, maps, target=target, steps=config.auc_steps)[0]),
            "sufficiency": float(map_sufficient(model, x, maps, config.score_area)[0])}


def _write_image(folder: Path, model: nn.Module, x: torch.Tensor, probs: torch.Tensor, label: int,
                 maps: dict[str, torch.Tensor], config: ExplainFilesConfig, names: list[str], source: Path) -> dict:
    """One image's folder (atomically): input, maps, figures and explanation.json; returns its record."""
    from .viz.attributions import explanation_grid, map_overlay

    probability = float(probs[label])
    top = probs.topk(min(3, len(probs)))
    record: dict[str, Any] = {
        "image": str(source), "target": {"class": label, "name": names[label], "probability": round(probability, 4)},
        "predictions": [{"class": int(i), "name": names[int(i)], "probability": round(float(p), 4)}
                        for p, i in zip(top.values, top.indices)],
        "explainers": {},
    }
    for name, m in maps.items():
        mask = _is_mask(m)
        entry: dict[str, Any] = {"flags": _flags(model, x, m, label) if mask else []}
        if mask:
            entry["mask_area"] = round(float(m.float().mean()), 4)
        if config.score:
            entry.update(_scores(model, x, m, label, config))
        record["explainers"][name] = entry
    title = f"{names[label]} ({probability:.2f})"
    with atomic_dir(folder, overwrite=True) as tmp:
        save_image_png(x[0], tmp / "image.png")
        (tmp / "maps.safetensors").write_bytes(save_safetensors(
            {name: m[0, 0].float().cpu().contiguous() for name, m in maps.items()},
            metadata={"class": str(label), "name": names[label], "probability": f"{probability:.6f}"}))
        for name, m in maps.items():
            map_overlay(x[0], m[0, 0], f"{name}: {title}", record["explainers"][name]["flags"], tmp / f"{name}.png")
        explanation_grid(x[0], {name: m[0, 0] for name, m in maps.items()}, title,
                         {name: e["flags"] for name, e in record["explainers"].items()}, tmp / "grid.png")
        write_json(tmp / "explanation.json", record)
    return record


def _summary(out: Path, config: ExplainFilesConfig, records: list[dict], skipped: dict[str, str]) -> dict[str, Any]:
    """Write ``metrics.json`` (and ``scores.csv`` with ``score``) over every image folder; return the summary."""
    summary: dict[str, Any] = {"model": config.model, "explainers": config.explainers, "images": len(records),
                               "skipped": skipped, "flagged": {}}
    rows = []
    for record in records:
        for name, entry in record["explainers"].items():
            if entry["flags"]:
                summary["flagged"].setdefault(name, []).append(record["image"])
            if config.score:
                rows.append({"image": record["image"], "explainer": name, "class": record["target"]["name"],
                             **{k: entry[k] for k in ("deletion_auc", "insertion_auc", "sufficiency")},
                             "flags": "; ".join(entry["flags"])})
    if config.score:
        means: dict[str, dict[str, float]] = {}
        for name in config.explainers:
            mine = [r for r in rows if r["explainer"] == name]
            means[name] = {k: sum(r[k] for r in mine) / len(mine) if mine else math.nan
                           for k in ("deletion_auc", "insertion_auc", "sufficiency")}
        summary["scores"] = means
        summary["per_image"] = rows
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SCORE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        (out / "scores.csv").write_text(buffer.getvalue())
    write_json(out / "metrics.json", summary)
    return summary


def explain_files(config: ExplainFilesConfig, out: str | os.PathLike, overwrite: bool = False,
                  progress: bool = True, classifier: nn.Module | None = None) -> dict[str, Any]:
    """Explain every image of ``config.images`` with every explainer; write ``out`` (see the module
    docstring) and return the summary that ``metrics.json`` holds. ``classifier``: a model already
    loaded (or wrapped, :func:`sparsex.wrap_classifier`) to use instead of loading ``config.model``
    (which then only names it)."""
    from .models.specs import load_classifier

    out = Path(out)
    base, files = find_image_files(config.images)
    model = classifier if classifier is not None else load_classifier(
        config.model, weights=config.weights, num_classes=config.num_classes, image_size=config.image_size)
    model = model.to(config.device).eval()
    names = class_names(model, model.num_classes)
    target = None if config.target is None else class_index(config.target, names)
    explainers = {name: create_explainer(name, model, **config.explainer_settings.get(name, {}))
                  for name in config.explainers}
    existed = out.exists()
    _open_output(out, config, overwrite)
    try:
        return _explain_all(config, out, base, files, model, names, target, explainers, progress)
    except SparsexError:
        if not existed and not any(out.glob("**/explanation.json")):
            shutil.rmtree(out, ignore_errors=True)  # nothing explained: leave nothing behind
        raise


def _explain_all(config: ExplainFilesConfig, out: Path, base: Path, files: list[Path], model: nn.Module,
                 names: list[str], target: int | None, explainers: dict[str, Any], progress: bool) -> dict[str, Any]:
    records, skipped, todo = [], {}, []
    for file in files:
        done = _image_dir(out, base, file) / "explanation.json"
        if done.is_file():
            records.append(read_json(done, "explanation"))
        else:
            todo.append(file)
    with progress_bar(total=len(todo), desc="explain", unit="image", disable=not progress) as bar:
        for start in range(0, len(todo), config.batch_size):
            chunk, images = [], []
            for file in todo[start:start + config.batch_size]:
                try:
                    images.append(model.preprocess.load(file))
                    chunk.append(file)
                except DataError as e:
                    skipped[str(file)] = str(e)
                    warnings.warn(f"skipping {file}: {e}", stacklevel=2)
                    bar.update()
            if not chunk:
                continue
            x = torch.stack(images).to(config.device)
            with torch.no_grad():
                probs = torch.softmax(model(x), dim=1)
            labels = probs.argmax(dim=1) if target is None else torch.full((len(x),), target, device=x.device)
            maps = {name: explainer.attribute(x, target=labels) for name, explainer in explainers.items()}
            for i, file in enumerate(chunk):
                records.append(_write_image(_image_dir(out, base, file), model, x[i:i + 1], probs[i], int(labels[i]),
                                            {name: m[i:i + 1] for name, m in maps.items()}, config, names, file))
                bar.update()
    if not records:
        raise DataError(f"no readable image among the {len(files)} file(s) of {config.images}")
    return _summary(out, config, records, skipped)
