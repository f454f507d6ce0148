"""One evaluation for every explanation: ``sparsex evaluate`` as a library call.

:func:`evaluate` scores a trained classifier (a ``sparsex train classifier`` run, or a SIDE /
InfoDisent / ProtoS-ViT run) and any registered explainers of it on one dataset split, and writes
one output folder:

- ``metrics.json``: the model's scores (accuracy, background independence) and one row per
  explainer (the part-world protocols of :mod:`sparsex.partworld.protocols`, deletion / insertion AUC,
  mask area for binary explainers; consistency / stability and the local and global sizes, in
  both definitions, for a prototype model's own ``prototypes`` explainer), the skipped protocols
  with the reason, the protocol's cost (forward passes, time), and for a prototype model
  ``prototype_settings``: which definition each size is, and the stability noise (its space,
  sigma, sigma in pixel units) and average;
- ``explanations.safetensors`` (:class:`FigureExplanations`: the first ``figure_images`` test
  images, their labels, predictions, part masks and every explainer's map of the predicted
  class) and ``explanations.png`` (their grid), ``radar.png`` (accuracy, BI, completeness,
  correctness, contrastivity per row), ``tables.md``;
- ``report.html``: a self-contained page with all of the above, the explanations first;
- ``config.json``: the resolved settings.

:func:`write_combined_report` puts several such folders on one page (``sparsex demo``): one grid
of the same images with a row per model and explainer, one table of every row.

The folder is written atomically: an interrupted or failing evaluation leaves nothing behind.
On a dataset without part masks (anything but the part world) the part protocols are skipped with
a warning that names them, and the rest (accuracy, deletion / insertion AUC, mask area) is still
computed.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .checks import check_int, check_number, from_settings
from .data import ImageDataset, create_dataset
from .distributed import check_device
from .errors import DataError, InputError, SparsexError
from .explainers.base import EXPLAINERS, create_explainer
from .inference import DEFAULT_BATCH, class_names
from .io import atomic_dir, atomic_file, check_output_dir, read_json, write_json
from .metrics.accuracy import accuracy_with_abstentions
from .metrics.faithfulness import deletion_auc, insertion_auc, map_sufficient
from .models.classifier import PrototypeClassifier
from .models.specs import is_spec, load_classifier
from .partworld import PartWorld
from .progress import progress_bar

#: explainers evaluated when none are named: a plain classifier's captum baselines, a prototype
#: model's own evidence
DEFAULT_EXPLAINERS = {"classifier": ("integrated-gradients", "gradcam"), "prototype": ("prototypes",)}
#: what the part protocols need, for the message when a dataset lacks it
PART_PROTOCOLS = ("bi", "completeness", "correctness", "contrastivity", "consistency", "stability")
#: the sizes' threshold: the trainers' default (``HeadTrainConfig.eps``), raised to the head's own
#: importance threshold where it has one (:func:`sparsex.models.contribution_threshold`)
SIZE_EPS = 1e-3
#: the figure images of an evaluation folder (:class:`FigureExplanations`)
EXPLANATIONS_FILE = "explanations.safetensors"


@dataclass
class EvaluateConfig:
    """Settings of :func:`evaluate`.

    ``model``: a model spec (:func:`sparsex.load_classifier`: a classifier / SIDE / ProtoS-ViT run
    folder, ``timm:NAME``, ``torchvision:NAME``, ``lite0-imagenet``; ``weights``, ``num_classes``,
    ``image_size`` for the named architectures). ``images``: a file or folder of unlabelled images
    to evaluate instead of a dataset (faithfulness for the predicted class only). ``explainers``: registered
    explainer names (empty: :data:`DEFAULT_EXPLAINERS`); ``explainer_settings`` maps a name to its
    settings. ``data``/``root``/``data_options`` default to the model's own training data (a
    different dataset is refused: the scores would mean nothing); ``split`` and ``limit`` (the
    first ``limit`` images; None: all) choose the images. ``internal_batch_size`` images go
    through the model at once. ``auc_steps`` steps of the deletion / insertion curves, measured
    on the first ``auc_limit`` of the evaluated images (None: all; each curve costs
    ``auc_steps + 1`` forward passes per image). ``figure_images`` images in the explanation figure.
    ``sufficiency_area``: the fraction of the pixels an attribution map keeps for its
    sufficiency (a mask keeps itself). ``device``: where the model, the images and the explainers run.
    """

    model: str = ""
    weights: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    images: str | None = None
    explainers: list[str] = field(default_factory=list)
    explainer_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: str | None = None
    root: str | None = None
    data_options: dict[str, Any] | None = None
    split: str = "test"
    limit: int | None = 500
    internal_batch_size: int = DEFAULT_BATCH
    auc_steps: int = 20
    auc_limit: int | None = None
    figure_images: int = 6
    sufficiency_area: float = 0.1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.model:
            raise SparsexError("evaluate needs a model (--model SPEC)")
        if self.images is not None and (self.data is not None or self.root is not None):
            raise SparsexError("evaluate takes a dataset (--data, --root) or unlabelled --images, not both")
        if isinstance(self.explainers, str):
            self.explainers = [name.strip() for name in self.explainers.split(",") if name.strip()]
        # canonical names (an alias such as "ig" resolves; an unknown name lists the registered ones)
        self.explainers = [EXPLAINERS.get(name).name for name in self.explainers]
        self.explainer_settings = {EXPLAINERS.get(name).name: v for name, v in self.explainer_settings.items()}
        if self.explainers:  # with none named, the settings are checked against the model's defaults in evaluate()
            check_settings_evaluated(self.explainer_settings, self.explainers)
        check_int(self.limit, "limit", 1, none_ok=True)
        check_int(self.auc_limit, "auc_limit", 1, none_ok=True)
        for name in ("internal_batch_size", "auc_steps"):
            check_int(getattr(self, name), name, 1)
        check_int(self.figure_images, "figure_images", 0, error=SparsexError)
        check_number(self.sufficiency_area, "sufficiency_area", 0, 1, low_open=True)
        check_device(self.device)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "EvaluateConfig":
        return from_settings(cls, settings, "evaluate")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_settings_evaluated(settings: dict[str, Any], explainers: list[str]) -> None:
    """Refuse settings for an explainer that is not evaluated (a typo would be ignored silently)."""
    unknown = sorted(set(settings) - set(explainers))
    if unknown:
        raise SparsexError(f"settings given for explainer(s) not evaluated: {', '.join(unknown)} "
                           f"(evaluated: {', '.join(explainers)})")


def model_name(model: nn.Module, checkpoint_config: dict[str, Any]) -> str:
    """A short row prefix: the prototype model's family (``side``, ``infodisent``, ``protosvit``)
    or the plain classifier's backbone (``lite0``, ``small-cnn``)."""
    if isinstance(model, PrototypeClassifier):
        settings = checkpoint_config.get("model") or {}
        return str(settings.get("variant") or settings.get("name") or "prototypes")
    return str((checkpoint_config.get("backbone") or {}).get("name") or "classifier")


def label_map(dataset_classes: list[str], model_classes: list[str], what: str) -> torch.Tensor | None:
    """The model's class index of each dataset class (None: the same indices). Folder names that
    are all among the model's class names map by name (case-insensitive); as many classes as the
    model has map by position; anything else is a one-line error."""
    if list(dataset_classes) == list(model_classes):
        return None
    lowered = {name.lower(): i for i, name in enumerate(model_classes)}
    if all(name.lower() in lowered for name in dataset_classes):
        return torch.tensor([lowered[name.lower()] for name in dataset_classes])
    if len(dataset_classes) == len(model_classes):
        return None  # a model trained on this folder's classes, in this order
    raise InputError(f"{what} has {len(dataset_classes)} classes ({', '.join(dataset_classes[:4])}, ...) that are not "
                     f"among the model's {len(model_classes)} class names; name its class folders after the model's "
                     f"classes, or evaluate unlabelled --images")


def resolve_data(config: EvaluateConfig, trained_on: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """The dataset to evaluate on: the model's own unless named; another dataset than the one the
    model was trained on raises a one-line error."""
    name = trained_on.get("name")
    if config.data is not None and name is not None and config.data != name:
        raise InputError(f"model {config.model} was trained on {name!r}, not {config.data!r}: its classes mean nothing "
                         f"there; evaluate it on {name!r} (the default)")
    data = config.data or name
    if data is None:
        raise InputError(f"model {config.model} does not record its training data; pass --data (e.g. imagefolder "
                         f"with --root DIR) or --images DIR")
    root = config.root if config.root is not None else trained_on.get("root")
    options = dict(trained_on.get("options") or {}) if config.data_options is None else dict(config.data_options)
    return data, root, options


class ExplanationMemo:
    """``explain(images, targets) -> maps`` that computes each (image, class) map once: the part
    protocols and the deletion / insertion curves ask for the same explanations (the label and
    the prediction coincide on correctly classified images), and explainers such as integrated
    gradients are the expensive part of an evaluation. Keys are the image's bytes' SHA-1 and the
    class. ``seconds`` is the time spent in the explainer.

    With a ``store`` folder every computed chunk is also written there (one safetensors shard per
    chunk, atomically) and the shards found there are loaded first, so an evaluation that is
    interrupted and run again keeps the explanations it had finished.
    """

    def __init__(self, attribute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], internal_batch_size: int,
                 store: Path | None = None) -> None:
        from safetensors.torch import load_file

        self.attribute, self.internal_batch_size, self.store = attribute, internal_batch_size, store
        self.maps: dict[tuple[str, int], torch.Tensor] = {}
        self.seconds = 0.0
        for shard in sorted(store.glob("*.safetensors")) if store is not None else ():
            for key, value in load_file(str(shard)).items():
                digest, _, target = key.partition(":")
                self.maps[(digest, int(target))] = value

    @staticmethod
    def _key(image: torch.Tensor, target: int) -> tuple[str, int]:
        return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest(), int(target)

    def _keep(self, keys: list[tuple[str, int]], maps: torch.Tensor) -> None:
        from safetensors.torch import save

        shard = {key: m.detach().cpu().contiguous() for key, m in zip(keys, maps)}
        self.maps.update(shard)
        if self.store is not None:
            self.store.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.store / f"{len(list(self.store.glob('*.safetensors'))):06d}.safetensors", "wb") as f:
                f.write(save({f"{digest}:{target}": m for (digest, target), m in shard.items()}))

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        keys = [self._key(x, t) for x, t in zip(images, targets.tolist())]
        todo = [keys.index(key) for key in dict.fromkeys(k for k in keys if k not in self.maps)]
        for start in range(0, len(todo), self.internal_batch_size):
            chunk = todo[start:start + self.internal_batch_size]
            began = time.perf_counter()
            maps = self.attribute(images[chunk], targets[chunk])
            self.seconds += time.perf_counter() - began
            self._keep([keys[i] for i in chunk], maps)
        return torch.stack([self.maps[key] for key in keys]).to(images.device)


@dataclass(frozen=True)
class FigureExplanations:
    """What an evaluation keeps of its figure images, for the reports' explanation grid
    (:data:`EXPLANATIONS_FILE` in its folder, safetensors): ``indices (N,)`` of the images in the
    split, ``images (N, C, H, W)`` uint8, ``labels`` and ``predicted`` ``(N,)`` class indices,
    ``maps``: explainer name -> its map of the predicted class ``(N, 1, h, w)`` float32,
    ``part_masks (N, K, H, W)`` bool where the dataset has them (else None), and the names of
    the ``classes`` (empty where the dataset has none) and of the ``part_names``."""

    indices: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    maps: dict[str, torch.Tensor]
    part_masks: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    part_names: list[str] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        tensors = {"indices": self.indices, "images": self.images, "labels": self.labels, "predicted": self.predicted,
                   **{f"map.{name}": m for name, m in self.maps.items()}}
        if self.part_masks is not None:
            tensors["part_masks"] = self.part_masks
        metadata = {"explainers": json.dumps(list(self.maps)), "classes": json.dumps(self.classes),
                    "part_names": json.dumps(self.part_names)}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FigureExplanations":
        """Read :meth:`save`'s file; a missing, corrupt or incomplete one raises a one-line DataError."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                tensors = {key: f.get_tensor(key) for key in f.keys()}
            explainers = json.loads(metadata["explainers"])
            return cls(tensors["indices"], tensors["images"], tensors["labels"], tensors["predicted"],
                       {name: tensors[f"map.{name}"] for name in explainers}, tensors.get("part_masks"),
                       json.loads(metadata["classes"]), json.loads(metadata["part_names"]))
        except (SafetensorError, OSError, ValueError) as e:
            raise DataError(f"cannot read evaluation figure images {path}: {str(e).splitlines()[0]}") from None
        except KeyError as e:
            raise DataError(f"evaluation figure images {path} lack {e.args[0]!r}; evaluate the model again") from None

    def class_name(self, label: int) -> str:
        """The name of class ``label`` (its index where the dataset names none)."""
        return self.classes[label] if 0 <= label < len(self.classes) else str(label)


def _figure_explanations(model: nn.Module, dataset: Any, images: torch.Tensor, labels: torch.Tensor,
                         memos: dict[str, ExplanationMemo], n: int) -> FigureExplanations:
    """The first ``n`` evaluated images (dataset items ``0 .. n-1``) and every explainer's map of
    their predicted class (from the memos: computed once)."""
    with torch.no_grad():
        predicted = model(images[:n]).argmax(dim=1)
    maps = {}
    for name, memo in memos.items():
        attributions = memo(images[:n], predicted).detach().float().cpu()
        maps[name] = attributions if attributions.dim() == 4 else attributions.unsqueeze(1)
    part_masks = torch.stack([dataset[i]["part_masks"] for i in range(n)]).bool() if isinstance(dataset, PartWorld) else None
    return FigureExplanations(torch.arange(n), (images[:n].clamp(0, 1) * 255).round().to(torch.uint8).cpu(),
                              labels[:n].cpu(), predicted.cpu(), maps, part_masks,
                              [str(c) for c in getattr(dataset, "classes", []) or []],
                              [str(p) for p in getattr(dataset, "part_names", []) or []])


def _is_mask(maps: torch.Tensor) -> bool:
    """Binary maps with some pixels kept: a mask explainer's output."""
    return bool(((maps == 0) | (maps == 1)).all() and (maps == 1).any())


def _load_split(dataset: Any, limit: int | None, progress: bool) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    from .data.sampler import dataset_tensors

    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise InputError("the evaluated split is empty")
    images, labels = dataset_tensors(dataset, progress, n)
    return list(range(n)), images, labels


def _faithfulness(model: nn.Module, images: torch.Tensor, explain: ExplanationMemo, config: EvaluateConfig) -> dict[str, Any]:
    """Deletion / insertion AUC, sufficiency (:func:`~sparsex.metrics.faithfulness.map_sufficient`:
    a mask as it is, another map's top ``config.sufficiency_area`` of the pixels) and the mask area
    of binary maps, for the predicted class, on the first ``config.auc_limit`` images."""
    images = images[:config.auc_limit]
    with torch.no_grad():
        predicted = torch.cat([model(x).argmax(dim=1) for x in images.split(config.internal_batch_size)])
    maps = explain(images, predicted)
    kwargs = {"steps": config.auc_steps, "internal_batch_size": config.internal_batch_size}
    scores: dict[str, Any] = {
        "deletion_auc": float(deletion_auc(model, images, maps, target=predicted, **kwargs).mean()),
        "insertion_auc": float(insertion_auc(model, images, maps, target=predicted, **kwargs).mean()),
        "sufficiency": float(map_sufficient(model, images, maps, config.sufficiency_area,
                                            config.internal_batch_size).double().mean()),
    }
    if _is_mask(maps):
        scores["mask_area"] = float(maps.float().mean())
    return scores


def _prototype_scores(model: PrototypeClassifier, dataset: Any, indices: list[int], images: torch.Tensor,
                      labels: torch.Tensor | None, config: EvaluateConfig, parts: bool,
                      progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sizes of the prototype model on the evaluated images (:func:`~sparsex.metrics.prototype.
    prototype_sizes`, the trainers' function, at the trainers' threshold; the true-class sizes need
    ``labels``), and (part world) the consistency and stability of its prototypes. Returns the
    scores and the settings that say which definitions they are (``metrics.json``'s
    ``prototype_settings``)."""
    from .metrics.consistency import consistency_stability
    from .metrics.prototype import prototype_sizes
    from .models import contribution_threshold

    weights = model.head.class_weights()
    with torch.no_grad():
        outs = [model.head(model.backbone.extract(x)) for x in images.split(config.internal_batch_size)]
    scores_ = torch.cat([o.scores for o in outs])
    predicted = torch.cat([o.logits.argmax(dim=1) for o in outs])
    contribution_eps = contribution_threshold(model.head, SIZE_EPS)  # as the trainers measure it
    result: dict[str, Any] = prototype_sizes(scores_, weights, predicted, labels, SIZE_EPS, contribution_eps)
    settings: dict[str, Any] = {"sizes": {
        "eps": SIZE_EPS, "contribution_eps": contribution_eps,
        "local_size": "predicted class, contributions s_p W[c, p] > contribution_eps (sparsex)",
        "local_size_true": "true class, importances >= contribution_eps (ProtoS-ViT compute_model_stats)",
        "global_size": "prototypes with max_c W[c, p] > eps (sparsex)",
        "global_size_used": "prototypes with a true-class importance >= contribution_eps on an evaluated image (ProtoS-ViT)",
    }}
    if parts:
        cs = consistency_stability((model.head, model.backbone), dataset, indices=indices,
                                   batch_size=config.internal_batch_size, progress=progress)
        result.update(consistency=cs["consistency"], stability=cs["stability"])
        settings["stability"] = {key: cs[key] for key in ("noise_space", "sigma", "noise_bound", "sigma_pixels", "average",
                                                            "region", "mu", "seed")}
    return result, settings


def _number(value: Any) -> Any:
    """JSON-safe: NaN and inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate(config: EvaluateConfig, out: str | os.PathLike | None = None, overwrite: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate ``config.model`` and its explainers (see the module docstring); write the output
    folder ``out`` (when given) and return what ``metrics.json`` holds."""
    from .partworld import InterventionCache, evaluate_parts, evaluate_parts_model

    if out is not None:
        check_output_dir(out, overwrite)
    began = time.perf_counter()
    model = load_classifier(config.model, weights=config.weights, num_classes=config.num_classes,
                            image_size=config.image_size).to(config.device)
    run = {} if is_spec(config.model) else load_checkpoint(config.model).config  # a run names its training data
    kind = "prototype" if isinstance(model, PrototypeClassifier) else "classifier"
    explainers = list(config.explainers) or list(DEFAULT_EXPLAINERS[kind])
    check_settings_evaluated(config.explainer_settings, explainers)
    if config.images is not None:
        dataset, data = UnlabelledImages(config.images, model.preprocess), "images"
    else:
        data, root, options = resolve_data(config, run.get("data") or {})
        if is_spec(config.model) and data == "imagefolder":
            options.setdefault("image_size", model.input_size[0])  # the model's own input size
        dataset = create_dataset(data, split=config.split, root=root, **options)
    indices, images, labels = _load_split(dataset, config.limit, progress)
    if dataset.classes:
        mapping = label_map(list(dataset.classes), class_names(model, model.num_classes), f"dataset {data!r}")
        labels = labels if mapping is None else mapping[labels]
    images, labels = images.to(config.device), labels.to(config.device)
    parts = isinstance(dataset, PartWorld)
    skipped: dict[str, str] = {}
    if not parts:
        reason = f"dataset {data!r} has no part masks and cannot render interventions (only the part world can)"
        skipped = {name: reason for name in PART_PROTOCOLS}
        warnings.warn(f"skipping {', '.join(PART_PROTOCOLS)}: {reason}; computing "
                      f"{'accuracy, ' if dataset.classes else ''}deletion/insertion AUC, sufficiency and mask area",
                      stacklevel=2)
    name = model_name(model, run) if run else str(config.model).split(":")[-1]
    result: dict[str, Any] = {"model": str(config.model), "model_name": name, "data": data, "split": config.split,
                              "images": len(indices), "explainers": explainers, "skipped": skipped, "rows": {}}

    cache, protocol_seconds = None, 0.0
    if parts:
        started = time.perf_counter()
        cache = InterventionCache(model, dataset, internal_batch_size=config.internal_batch_size, progress=progress)
        model_scores = evaluate_parts_model(model, dataset, indices, cache=cache).metrics
        protocol_seconds = time.perf_counter() - started
    elif dataset.classes:
        with torch.no_grad():
            logits = torch.cat([model(x) for x in images.split(config.internal_batch_size)])
        model_scores = accuracy_with_abstentions(logits, labels)
    else:
        model_scores = {}  # unlabelled images: no accuracy
    result["model_scores"] = {k: _number(v) for k, v in model_scores.items()}

    partial = _partial_store(out, config)
    memos: dict[str, ExplanationMemo] = {}
    try:
        for explainer_name in progress_bar(explainers, desc="explainers", unit="explainer", disable=not progress, leave=False):
            explainer = create_explainer(explainer_name, model, **config.explainer_settings.get(explainer_name, {}))
            memo = memos[explainer_name] = ExplanationMemo(lambda x, t, e=explainer: e.attribute(x, target=t),
                                                            config.internal_batch_size,
                                                            None if partial is None else partial / explainer_name)
            row: dict[str, Any] = dict(model_scores)
            if parts and explainer.explains_predicted_class_only:
                result["skipped"][f"{explainer_name}: part protocols"] = (
                    f"{explainer_name} explains only the predicted class; the protocols explain the true and contrasting classes")
            elif parts:
                started, explained = time.perf_counter(), memo.seconds
                row.update(evaluate_parts(model, dataset, memo, indices, internal_batch_size=config.internal_batch_size,
                                          cache=cache, progress=progress).metrics)
                protocol_seconds += time.perf_counter() - started - (memo.seconds - explained)
            row.update(_faithfulness(model, images, memo, config))
            if explainer_name == "prototypes" and isinstance(model, PrototypeClassifier):
                prototype_scores, result["prototype_settings"] = _prototype_scores(
                    model, dataset, indices, images, labels if dataset.classes else None, config, parts, progress)
                row.update(prototype_scores)
            row["explain_seconds"] = memo.seconds
            result["rows"][f"{name}.{explainer_name}"] = {k: _number(v) for k, v in row.items()}
    except SparsexError:  # bad settings or input: nothing to resume, nothing left behind
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        raise

    explain_seconds = sum(m.seconds for m in memos.values())
    result["protocol"] = {"wall_s": time.perf_counter() - began, "explain_s": explain_seconds}
    if cache is not None:
        result["protocol"].update(
            forward_passes=cache.forward_passes, forward_s=cache.forward_seconds, render_s=cache.render_seconds,
            # the part protocols' own time (model scores and every explainer's protocols, less the explanations)
            parts_protocol_s=protocol_seconds)
    if out is not None:
        _write_outputs(Path(out), config, result, model, dataset, images, labels, memos, overwrite)
        shutil.rmtree(partial, ignore_errors=True)  # the finished evaluation no longer needs its partial explanations
    return result


def _partial_store(out: str | os.PathLike | None, config: EvaluateConfig) -> Path | None:
    """``<out>.partial``: where the explanations of an unfinished evaluation into ``out`` are kept
    (:class:`ExplanationMemo`); those of other settings are discarded."""
    if out is None:
        return None
    partial = Path(f"{os.fspath(out).rstrip(os.sep)}.partial")
    settings = json.loads(json.dumps(config.to_dict()))
    if partial.is_dir() and not ((partial / "config.json").is_file()
                                 and read_json(partial / "config.json", "partial evaluation") == settings):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    write_json(partial / "config.json", settings)
    return partial


class UnlabelledImages(ImageDataset):
    """The image files of a file or folder (:func:`~sparsex.data.imagefolder.find_image_files`),
    read as a model's ``preprocess`` says; no labels (``label`` -1, ``classes`` empty). Files that
    cannot be read are skipped with a warning that names them."""

    name = "images"

    def __init__(self, path: str | os.PathLike, preprocess: Any) -> None:
        from .data.imagefolder import find_image_files

        self.split, self.classes, self.preprocess = "test", [], preprocess
        self.image_size = preprocess.input_size
        self.paths = []
        for file in find_image_files(path)[1]:
            try:
                preprocess.load(file)
                self.paths.append(file)
            except DataError as e:
                warnings.warn(f"skipping {file}: {e}", stacklevel=2)
        if not self.paths:
            raise DataError(f"no readable image in {path}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.preprocess.load(self.paths[i]), "label": -1, "path": str(self.paths[i])}

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "paths": [str(p) for p in self.paths]}


#: one evaluation as a report shows it: evaluate()'s result and its figure images (None: no figure)
Evaluation = tuple[dict[str, Any], FigureExplanations | None]


def _explanation_figures(evaluations: list[Evaluation]) -> list[Any]:
    """One grid of explanations per evaluated dataset split (in the demo: one): columns are the
    split's first figure images (as many as every evaluation of the split kept), rows the image,
    its parts (part world), then every (model, explainer) map of the predicted class, captioned
    with the prediction (✓ right, ✗ wrong)."""
    from .viz.report import MapRow, explanations_figure

    splits: dict[tuple[str, str], list[tuple[dict[str, Any], FigureExplanations]]] = {}
    for result, explained in evaluations:
        if explained is not None:
            splits.setdefault((result["data"], result["split"]), []).append((result, explained))
    figures = []
    for members in splits.values():
        first = members[0][1]
        n = min(len(explained.indices) for _, explained in members)
        rows = []
        for result, explained in members:
            if not torch.equal(explained.indices[:n], first.indices[:n]):
                raise DataError(f"evaluations of {result['data']!r} explain different images "
                                f"({first.indices[:n].tolist()} and {explained.indices[:n].tolist()})")
            captions = [f"{explained.class_name(int(p))} {'✓' if p == y else '✗'}"
                        for p, y in zip(explained.predicted[:n], explained.labels[:n])]
            rows += [MapRow(f"{result['model_name']}\n{explainer}", maps[:n], captions)
                     for explainer, maps in explained.maps.items()]
        figures.append(explanations_figure(
            first.images[:n].float() / 255, rows,
            captions=[f"#{int(i)}: {first.class_name(int(y))}" for i, y in zip(first.indices[:n], first.labels[:n])],
            part_masks=None if first.part_masks is None else first.part_masks[:n], part_names=first.part_names or None))
    return figures


def _report_sections(evaluations: list[Evaluation], title: str,
                     links: Sequence[tuple[str, str]] = ()) -> tuple[list[Any], bytes, list[bytes]]:
    """The report's sections over ``evaluations``, in first-screen order: the explanation grid,
    the scores table (the rows' scores with a direction), the radar plot, the cost, the rows'
    counts and settings, ``links`` to each model's own report (``(href, name)``) and the skipped
    protocols. Returns the sections, the radar plot and the grids as PNG bytes (to save them too)."""
    from .metrics.registry import metric_info
    from .viz.report import RADAR_AXES, ReportSection, figure_to_png_bytes, metrics_table_html, radar_figure

    rows = {name: row for result, _ in evaluations for name, row in result["rows"].items()}
    columns = _row_columns(rows)
    scores = [c for c in columns if metric_info(c).direction is not None]
    counts = [c for c in columns if metric_info(c).direction is None]
    grids = [figure_to_png_bytes(figure) for figure in _explanation_figures(evaluations)]
    radar = figure_to_png_bytes(radar_figure({name: {axis: row.get(axis) for axis in RADAR_AXES} for name, row in rows.items()},
                                             title=title))
    sections = []
    if grids:
        sections.append(ReportSection("Explanations of the predicted class", figures=grids))
    sections += [ReportSection("Scores", html=metrics_table_html(rows, scores)),
                 ReportSection("Summary scores (radar)", figures=[radar]),
                 ReportSection("Cost (seconds, forward passes)",
                               html=metrics_table_html({result["model_name"]: result["protocol"] for result, _ in evaluations}))]
    if counts:
        sections.append(ReportSection("Counts and settings", html=metrics_table_html(rows, counts)))
    if links:
        items = "".join(f'<li><a href="{html.escape(link)}">{html.escape(name)}</a></li>' for link, name in links)
        sections.append(ReportSection("Reports of each model", html=f"<ul>{items}</ul>"))
    for result, _ in evaluations:
        if result["skipped"]:
            reasons = "; ".join(sorted(set(result["skipped"].values())))
            sections.append(ReportSection(f"Skipped protocols ({result['model_name']})",
                                          text=f"{', '.join(result['skipped'])}: {reasons}"))
    return sections, radar, grids


def _row_columns(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Every key of the rows, in the metric registry's order."""
    from .viz.report import report_order

    return report_order([key for row in rows.values() for key in row])


def write_combined_report(path: str | os.PathLike, evaluations: Sequence[str | os.PathLike], title: str) -> Path:
    """One self-contained report page over several evaluation output folders (each written by
    :func:`evaluate`), written atomically: one explanation grid of the same images with a row per
    (model, explainer), one table of every row, links to each folder's own ``report.html``
    (relative to ``path``). A folder without ``metrics.json`` raises a one-line DataError."""
    from .viz.report import write_report

    if not evaluations:
        raise InputError("a combined report needs at least one evaluation folder, got none")
    path = Path(path)
    loaded, links = [], []
    for folder in map(Path, evaluations):
        result = read_json(folder / "metrics.json", "evaluation metrics.json")
        explained = FigureExplanations.load(folder / EXPLANATIONS_FILE) if (folder / EXPLANATIONS_FILE).is_file() else None
        loaded.append((result, explained))
        if (folder / "report.html").is_file():
            links.append((Path(os.path.relpath(folder / "report.html", path.parent)).as_posix(), result["model_name"]))
    sections, _, _ = _report_sections(loaded, title, links)
    return write_report(path, title, sections)


def _write_outputs(out: Path, config: EvaluateConfig, result: dict[str, Any], model: nn.Module, dataset: Any,
                   images: torch.Tensor, labels: torch.Tensor, memos: dict[str, ExplanationMemo], overwrite: bool) -> None:
    from .viz.report import ReportSection, write_report

    title = f"{result['model_name']} on {result['data']} ({result['split']})"
    n = min(config.figure_images, len(images))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "config.json", config.to_dict())
        write_json(tmp / "metrics.json", result)
        explained = _figure_explanations(model, dataset, images, labels, memos, n) if n > 0 else None
        if explained is not None:
            explained.save(tmp / EXPLANATIONS_FILE)
        sections, radar, grids = _report_sections([(result, explained)], title)
        (tmp / "radar.png").write_bytes(radar)
        if grids:
            (tmp / "explanations.png").write_bytes(grids[0])
        sections.append(ReportSection("Settings", pre="\n".join(f"{k}: {v}" for k, v in config.to_dict().items())))
        (tmp / "tables.md").write_text(_markdown_table(result["rows"], _row_columns(result["rows"])))
        write_report(tmp / "report.html", f"sparsex evaluation: {title}", sections)


def _markdown_table(rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| row | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    lines += [f"| {name} | " + " | ".join(cell(row.get(c)) for c in columns) + " |" for name, row in rows.items()]
    return "\n".join(lines) + "\n"
