"""Explanations of prototype heads (SIDE, InfoDisent, ProtoS-ViT): galleries, per-image
explanations, a captum-shaped evidence map and the end-to-end ``explain_checkpoint``.

Everything here uses only the prototype-head interface: ``head(features) ->``
:class:`~sparsex.models.PrototypeOutput` (``logits (B, K)``, non-negative ``scores (B, P)``,
``maps (B, P, h, w)``, flat arg-max ``locations (B, P)``), ``head.class_weights() -> (K, P)``
and ``head.probabilities(logits) -> (B, K)``. The logit of class ``c`` is read as
``logits[c] = sum_p s_p W[c, p] + b_c``, so prototype ``p`` contributes ``s_p W[c, p]`` to it and
contributes (in the sense of the local-size metric) when that exceeds ``eps``. A head with a
``contribution_threshold`` (ProtoS-ViT) drops importances at or below it from its logits at
inference; they are dropped here too, so the explanation adds up to the logit.

The evidence map of :meth:`PrototypeExplainer.attribute` comes in two modes: ``"sparsex"``
(the default: contributions times the bilinear-upsampled post-head maps) and ``"official"``
(ProtoS-ViT's FunnyBirds map, hturbe/protosvit ``src/evaluation/funny_birds/explainers/
explainer_wrapper.py``, ``ProtoExplainer.explain``: importances times the nearest-upsampled
softmax similarities, each normalised to unit mass, so the map sums to the logit). The
official mode needs a head with ``similarities(features) -> (B, P, h, w)`` (ProtoS-ViT).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..backbones import Backbone, create_backbone
from ..checkpoint import checkpoint_dir, load_checkpoint
from ..checks import check_int, check_number, check_tensor
from ..data.base import create_dataset, load_image, pil_to_tensor, resize_center_crop
from ..errors import CheckpointError, DataError, InputError, SparsexError
from ..features import extract_features
from ..inference import check_model_dtype, resolve_targets
from ..io import atomic_dir, check_output_dir, write_json
from ..metrics.accuracy import abstains
from ..models import PrototypeOutput, contribution_threshold, load_model
from ..models.classifier import PROTOTYPE_FAMILIES
from ..models.gallery import Gallery, build_gallery, load_gallery, save_gallery
from ..viz.prototypes import MAX_ROWS, explanation_figure, gallery_patches
from .base import EXPLAINERS, Explainer

# ----------------------------------------------------------------------------------------------
# Explanations of single images.
# ----------------------------------------------------------------------------------------------


@dataclass
class ClassPrediction:
    """One predicted class: index, probability and logit."""

    label: int
    probability: float
    logit: float


@dataclass
class PrototypeContribution:
    """Prototype ``p``'s part in the explained logit: ``contribution = score * weight``.

    ``map (h, w)`` is the prototype's activation map; ``feature_location (i, j)`` its arg-max
    cell; ``location (y, x)`` the centre of that cell in image pixels (continuous coordinates,
    ``(0, 0)`` the top-left corner of the image); ``image_size (H, W)`` the explained image's size.
    """

    prototype: int
    score: float
    weight: float
    contribution: float
    map: torch.Tensor
    feature_location: tuple[int, int]
    location: tuple[float, float]
    image_size: tuple[int, int]

    @property
    def heatmap(self) -> torch.Tensor:
        """The map upsampled to the image: ``(H, W)``, bilinear (computed on access)."""
        return _upsample(self.map[None, None], self.image_size)[0, 0]


@dataclass
class PrototypeExplanation:
    """Why a prototype head classified one image as it did.

    ``predictions``: the top classes by probability (and, for sigmoid heads, every class above
    0.5), most probable first. ``target``: the explained class (the top prediction unless asked
    otherwise), ``logit`` its logit and ``bias = logit - sum_p s_p W[target, p]`` the part no
    prototype explains. ``prototypes``: every prototype with ``s_p W[target, p] > eps``, largest
    contribution first. ``image_size (H, W)`` and ``feature_size (h, w)`` are the image's and
    the map's sizes.
    """

    predictions: list[ClassPrediction]
    target: int
    logit: float
    bias: float
    eps: float
    prototypes: list[PrototypeContribution]
    image_size: tuple[int, int]
    feature_size: tuple[int, int]
    #: the logits all tie (:func:`sparsex.metrics.abstains`): the target is the lowest index, not a decision
    abstains: bool = False

    def to_dict(self, class_names: Sequence[str] | None = None, gallery: Gallery | None = None) -> dict[str, Any]:
        """A JSON-serialisable summary (no maps); with ``gallery``, each prototype lists its
        nearest training items."""

        def name(label: int) -> str | None:
            return class_names[label] if class_names is not None and 0 <= label < len(class_names) else None

        prototypes = []
        for c in self.prototypes:
            entry: dict[str, Any] = {
                "prototype": c.prototype, "score": c.score, "weight": c.weight, "contribution": c.contribution,
                "location": {"y": c.location[0], "x": c.location[1]},
                "feature_location": {"i": c.feature_location[0], "j": c.feature_location[1]},
            }
            if gallery is not None:
                entry["gallery"] = [
                    {"index": int(n), "label": int(y), "class": name(int(y)), "score": float(s), "location": int(loc)}
                    for n, y, s, loc in zip(gallery.indices[c.prototype], gallery.labels[c.prototype],
                                            gallery.scores[c.prototype], gallery.locations[c.prototype])
                ]
            prototypes.append(entry)
        return {
            "predictions": [{"label": p.label, "class": name(p.label), "probability": p.probability, "logit": p.logit}
                            for p in self.predictions],
            "target": {"label": self.target, "class": name(self.target), "logit": self.logit, "bias": self.bias,
                       "prototype_evidence": sum(c.contribution for c in self.prototypes)},
            "eps": self.eps,
            "image_size": list(self.image_size),
            "feature_size": list(self.feature_size),
            "num_contributing": len(self.prototypes),
            "abstains": self.abstains,
            "prototypes": prototypes,
        }


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, n, h, w)`` -> ``(B, n, H, W)``, bilinear, pixel centres aligned (``align_corners=False``)."""
    return F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)


#: The evidence maps :meth:`PrototypeExplainer.attribute` draws: sparsex's and ProtoS-ViT's official one.
EVIDENCE_MODES = ("sparsex", "official")


def _nearest_pixel_counts(size: int, full: int, device: torch.device) -> torch.Tensor:
    """How many of ``full`` output pixels nearest upsampling (``F.interpolate``'s default mode)
    takes from each of ``size`` input pixels: ``(size,)`` float."""
    source = F.interpolate(torch.arange(size, dtype=torch.float32, device=device).view(1, 1, size), size=full,
                           mode="nearest")
    return torch.bincount(source.flatten().long(), minlength=size).float()


class PrototypeExplainer:
    """Explain a prototype head on a frozen backbone: ``explain`` one image in full, or
    ``attribute`` a batch in captum's shape.

    ``eps`` is the contribution threshold (the local-size metric's): prototype ``p`` contributes
    to class ``c`` when ``s_p W[c, p] > eps``. ``mode`` picks the evidence map of
    :meth:`attribute`: ``"sparsex"`` or ``"official"`` (ProtoS-ViT's; heads with softmax
    similarities only).
    """

    def __init__(self, head: nn.Module, backbone: Backbone, eps: float = 1e-3, mode: str = "sparsex") -> None:
        if mode not in EVIDENCE_MODES:
            raise InputError(f"mode must be one of {', '.join(map(repr, EVIDENCE_MODES))}, got {mode!r}")
        if mode == "official" and not callable(getattr(head, "similarities", None)):
            raise InputError(f"mode='official' (ProtoS-ViT's evidence map) needs a head with softmax similarities; "
                             f"{type(head).__name__} has none (use mode='sparsex')")
        self.head = head
        self.backbone = backbone
        self.eps = check_number(eps, "eps", 0)
        self.mode = mode

    def _forward(self, images: torch.Tensor) -> PrototypeOutput:
        device = next(self.head.parameters()).device
        return self.head(self.backbone.extract(images.to(device)))

    @torch.no_grad()
    def explain(self, image: torch.Tensor, top_classes: int = 3, eps: float | None = None,
                target: int | None = None) -> PrototypeExplanation:
        """Explain one image ``(C, H, W)`` or ``(1, C, H, W)`` (C = 3, or 1 for grey backbones),
        values in ``[0, 1]``.

        Lists the ``top_classes`` most probable classes (plus every class above probability 0.5)
        and the prototypes contributing to ``target`` (default: the most probable class) with
        ``s_p W[target, p] > eps`` (default: the explainer's ``eps``).
        """
        if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4) or (image.dim() == 4 and image.shape[0] != 1):
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise InputError(f"explain takes one image (C, H, W) or (1, C, H, W), got {got}")
        x = check_tensor(image if image.dim() == 4 else image[None], "image", "(1, C, H, W)", nonempty=True)
        check_model_dtype(self.backbone, x)
        check_int(top_classes, "top_classes", 1)
        eps = self.eps if eps is None else check_number(eps, "eps", 0)
        out = self._forward(x)
        logits = out.logits[0].float().cpu()
        probs = self.head.probabilities(out.logits)[0].float().cpu()
        order = logits.argsort(descending=True)  # = by probability, without ties where it saturates
        shown = order[(torch.arange(len(order)) < top_classes) | (probs[order] > 0.5)]
        c = int(order[0]) if target is None else check_int(target, "target class", 0, len(probs) - 1)
        weights = self.head.class_weights()[c].float().cpu()
        scores = out.scores[0].float().cpu()
        contributions = scores * weights
        contributions = contributions * (contributions > contribution_threshold(self.head, 0.0))  # as in the logit
        selected = (contributions > eps).nonzero().flatten()
        selected = selected[contributions[selected].argsort(descending=True)]
        maps, locations = out.maps[0].float().cpu(), out.locations[0].cpu()
        (H, W), (h, w) = tuple(x.shape[-2:]), tuple(maps.shape[-2:])
        prototypes = []
        for p in selected.tolist():
            i, j = divmod(int(locations[p]), w)
            prototypes.append(PrototypeContribution(
                prototype=p, score=float(scores[p]), weight=float(weights[p]), contribution=float(contributions[p]),
                map=maps[p], feature_location=(i, j), location=((i + 0.5) * H / h, (j + 0.5) * W / w),
                image_size=(H, W)))
        return PrototypeExplanation(
            predictions=[ClassPrediction(int(k), float(probs[k]), float(logits[k])) for k in shown],
            target=c, logit=float(logits[c]), bias=float(logits[c] - contributions.sum()), eps=eps,
            prototypes=prototypes, image_size=(H, W), feature_size=(h, w), abstains=bool(abstains(out.logits)[0]))

    @torch.no_grad()
    def attribute(self, inputs: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Class evidence maps ``(B, 1, H, W)`` for images ``(B, C, H, W)`` in ``[0, 1]``, for class
        ``c``: the ``target`` (an int for all images, or one per image) or the predicted class.
        Returned on the input's device.

        ``mode="sparsex"``: ``A_c = sum_p [s_p W[c, p] > eps] s_p W[c, p] up(M_p)`` with ``M_p`` the
        prototype's map (post-head for ProtoS-ViT) and ``up`` the bilinear upsampling to ``(H, W)``.

        ``mode="official"`` (ProtoS-ViT, ``ProtoExplainer.explain``): ``A_c = sum_p I_p(c)
        near(S_p) / sum_{pixels} near(S_p)`` with ``S_p`` the softmax similarity map, ``near`` the
        nearest upsampling and ``I_p(c)`` the importance ``s_p W[c, p]`` as it enters the logit (zero
        at or below the head's importance threshold; ``eps`` is not applied), so ``A_c`` sums to the
        logit. Computed on the ``h x w`` grid (nearest upsampling repeats cells, so each map's mass is
        ``sum_ij S_p[i, j] n_i m_j`` with ``n_i``, ``m_j`` the pixel rows and columns a cell takes)
        and upsampled once.
        """
        check_tensor(inputs, "inputs", "(B, C, H, W)", nonempty=True)
        check_model_dtype(self.backbone, inputs)
        device = next(self.head.parameters()).device
        features = self.backbone.extract(inputs.to(device))
        out = self.head(features)
        classes = resolve_targets(out.logits, target)
        weights = self.head.class_weights()[classes]  # (B, P)
        contributions = out.scores * weights
        size = tuple(inputs.shape[-2:])
        if self.mode == "sparsex":
            coefficients = contributions * (contributions > contribution_threshold(self.head, self.eps))
            evidence = torch.einsum("bp,bphw->bhw", coefficients, out.maps)[:, None]
            return _upsample(evidence, size).to(inputs.device)
        importances = contributions * (contributions > contribution_threshold(self.head, 0.0))  # as in the logit
        similarities = self.head.similarities(features).float()  # (B, P, h, w)
        h, w = similarities.shape[-2:]
        rows, cols = _nearest_pixel_counts(h, size[0], device), _nearest_pixel_counts(w, size[1], device)
        mass = torch.einsum("bphw,h,w->bp", similarities, rows, cols)
        evidence = torch.einsum("bp,bphw->bhw", importances.float() / mass, similarities)[:, None]
        return F.interpolate(evidence, size=size, mode="nearest").to(inputs.device)


@EXPLAINERS.register("prototypes", description="a prototype model's own evidence: sum of its contributing prototypes' maps")
class PrototypeEvidence(Explainer):
    """The class evidence maps of :meth:`PrototypeExplainer.attribute` in the :class:`Explainer`
    registry, for a :class:`~sparsex.models.classifier.PrototypeClassifier` (a model with a
    prototype ``head`` and a ``backbone``)."""

    name = "prototypes"

    def __init__(self, model: nn.Module, eps: float = 1e-3, mode: str = "sparsex") -> None:
        super().__init__(model)
        if not hasattr(getattr(model, "head", None), "class_weights") or not hasattr(model, "backbone"):
            raise SparsexError(f"the prototypes explainer needs a prototype model (SIDE, InfoDisent, ProtoS-ViT); "
                               f"got {type(model).__name__}")
        self.explainer = PrototypeExplainer(model.head, model.backbone, eps, mode)

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.explainer.attribute(inputs, targets)


# ----------------------------------------------------------------------------------------------
# End to end: a checkpoint and an image file -> explanation.png + explanation.json.
# ----------------------------------------------------------------------------------------------


def _fit(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize (shorter side) and centre-crop to a square ``size``; plain resize otherwise."""
    if img.size == (size[1], size[0]):
        return img
    if size[0] == size[1]:
        return resize_center_crop(img, size[0])
    return img.resize((size[1], size[0]), Image.BILINEAR)


def explain_checkpoint(checkpoint: str | os.PathLike, image_path: str | os.PathLike, out_dir: str | os.PathLike,
                       k: int = 5, top_classes: int = 3, overwrite: bool = False, progress: bool = True,
                       device: str | torch.device = "cpu", root: str | os.PathLike | None = None) -> Path:
    """Explain ``image_path`` with a trained prototype head; write ``out_dir/explanation.png``
    and ``out_dir/explanation.json`` (atomically; an existing ``out_dir`` needs ``overwrite``).

    ``checkpoint`` is a checkpoint folder or a run folder holding ``checkpoint/``; its config
    names the backbone, the training data and the feature cache. The image is resized and
    centre-cropped to the backbone's input size. The gallery (``k`` nearest training patches per
    prototype) is read from the checkpoint folder, or built from the cached training features and
    saved there on first use. ``root`` points at the training data where it has moved since the
    run; where it cannot be read at all, the prediction is explained without training-set patches
    and one warning says so. The checkpoint must hold a prototype model (SIDE, InfoDisent or
    ProtoS-ViT; its family is read from it).
    """
    for setting, value in (("k", k), ("top_classes", top_classes)):
        check_int(value, setting, 1)
    out_dir = check_output_dir(out_dir, overwrite)
    folder = checkpoint_dir(checkpoint)
    family = load_checkpoint(folder).family
    if family not in PROTOTYPE_FAMILIES:
        raise CheckpointError(f"checkpoint {folder} holds a {family!r} model, not a prototype model "
                              f"({', '.join(PROTOTYPE_FAMILIES)})")
    head, loaded = load_model(folder)
    cfg = loaded.config
    missing = [key for key in ("backbone", "data", "cache_dir") if key not in cfg]
    if missing:
        raise CheckpointError(f"checkpoint {folder} config lacks {', '.join(missing)}; it was not written by a sparsex trainer")
    head = head.to(device)
    backbone = create_backbone(**cfg["backbone"]).to(device)
    data_cfg = cfg["data"]
    data_root = root if root is not None else data_cfg.get("root")
    try:
        dataset = create_dataset(data_cfg["name"], split="train", root=data_root, **data_cfg.get("options", {}))
    except DataError as e:
        warnings.warn(f"the training data of {folder} cannot be read ({e}); explaining without training-set patches "
                      f"(pass root=/--root DIR where the data has moved)", stacklevel=2)
        dataset = None
    channels = dataset.channels if dataset is not None else (3 if backbone.info.in_chans == 3 else 1)
    image = pil_to_tensor(_fit(load_image(image_path, channels=channels), backbone.info.input_size))

    gallery = load_gallery(folder)
    if dataset is not None and (gallery is None or gallery.k < min(k, gallery.num_items)):
        cache, _ = extract_features(dataset, backbone, cfg["cache_dir"], device=device, progress=progress)
        gallery = build_gallery(head, cache, k=k)
        try:
            save_gallery(folder, gallery)
        except OSError as e:
            warnings.warn(f"could not save the gallery into {folder} ({e}); it will be rebuilt next time", stacklevel=2)
    gallery = gallery.top(k) if gallery is not None and dataset is not None else None

    explanation = PrototypeExplainer(head, backbone).explain(image, top_classes=top_classes)
    shown = [c.prototype for c in explanation.prototypes[:MAX_ROWS]]
    patches = gallery_patches(gallery, dataset, shown) if gallery is not None else None
    class_names = list(data_cfg.get("classes") or (dataset.classes if dataset is not None else []))
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        explanation_figure(explanation, image, gallery=gallery, gallery_patches=patches, class_names=class_names or None,
                           out=tmp / "explanation.png")
        write_json(tmp / "explanation.json", {
            "checkpoint": str(folder), "image": str(image_path), "k": gallery.k if gallery is not None else 0,
            **explanation.to_dict(class_names or None, gallery),
        })
    return out_dir
