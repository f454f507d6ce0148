"""``sparsex circuit`` on files: an image file and a model spec in, the circuit readout
(:func:`~sparsex.explainers.circuit.readout`), its faithfulness
(:func:`~sparsex.explainers.circuit_faithfulness.circuit_faithfulness`) and their figures out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import InputError
from ..inference import class_index, class_names
from .circuit import (
    DEFAULT_THRESHOLD,
    SELECTIONS,
    _check_settings,
    _check_target,
    _layer_list,
    circuit_to_json,
    default_sufficient,
    readout,
)
from .circuit_faithfulness import ABLATIONS, NECESSARY_DROP, circuit_faithfulness
from .hooks import resolve_layers


def circuit_file(model: str | os.PathLike, image: str | os.PathLike, out: str | os.PathLike,
                 explainer: str | os.PathLike | None = None, target: int | str | None = None,
                 layers: str | Sequence[str] | None = None, top_k: int | None = None, share: float | None = None,
                 threshold: float = DEFAULT_THRESHOLD, edge_top_k: int | None = None, other_classes: int = 0,
                 faithfulness: bool = False, reference: str | os.PathLike | None = None, ablation: str = "mean",
                 selection: str = "activation", sufficient: bool | None = None, overwrite: bool = False,
                 device: str | torch.device = "cpu", **model_settings: Any) -> Path:
    """The circuit of a classifier on one image file; what ``sparsex circuit`` does.

    ``model`` is a model spec (:func:`~sparsex.models.specs.load_classifier`: a ``sparsex train
    classifier`` run folder, ``timm:NAME``, ``torchvision:NAME``, ``lite0-imagenet``), with
    ``model_settings`` (``weights``, ``num_classes``, ``image_size``) passed on. The image is read
    with the model's own preprocessing (``model.preprocess``), or resized (bilinear) to the size the
    ``explainer`` (a ``sparsex train minimal-mask`` run trained for this classifier) was trained
    on. With an explainer the readout runs on the
    explanation ``e = m * x + (1 - m) * blur(x)``, and ``target`` defaults to the class predicted on
    ``x`` (the mask always explains the predicted class). ``target`` is a class index or name.
    Writes, atomically, ``circuit.json``
    (:func:`circuit_to_json`), ``circuit.png`` (:func:`~sparsex.viz.circuit.circuit_figure`) and
    ``image.png`` (plus ``mask.png`` and ``explanation.png`` with an explainer) into ``out``.

    With ``faithfulness`` the circuit is also ablated on the input it was read from
    (:func:`~sparsex.explainers.circuit_faithfulness.circuit_faithfulness`, ``ablation`` ``"mean"`` or
    ``"zero"``, each circuit channel also alone) and ``faithfulness.json`` is written beside
    ``circuit.json``; each channel node gets ``single_drop`` and ``necessary`` (``single_drop >=``
    :data:`~sparsex.explainers.circuit_faithfulness.NECESSARY_DROP`), which the figure outlines.
    ``selection`` picks each layer's channels by ``"activation"`` (the paper's) or
    ``"attribution"``, each layer keeping ``top_k`` channels or ``share`` of its positive score
    (:func:`~sparsex.explainers.circuit.readout`; neither: the selection's default), cut with ``sufficient`` to the
    fewest that alone keep the label (None: the readout's default, on for ``"attribution"``). The mean that
    mean ablation and the cut ablate to, and where the attribution's path starts, is taken over
    ``reference`` (a folder or file of images, read like the image), or by default over the blurred
    input ``blur(x)`` (the baseline of the mask explanation: a channel is set to what it carries once
    the image's detail is gone; the mean of the one image itself would ablate nothing). With an
    explainer, ``faithfulness.json`` also says whether the mask is empty and whether the explanation
    keeps the label.
    """
    from ..data.base import read_image_tensor, save_image_png
    from ..io import atomic_dir, check_output_dir, write_json
    from ..models.specs import load_classifier
    from ..viz.circuit import circuit_figure
    from .minimal_mask import MinimalMask

    check_output_dir(out, overwrite)
    _check_settings(top_k, threshold, edge_top_k, other_classes, share)
    if ablation not in ABLATIONS:
        raise InputError(f"ablation must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
    if selection not in SELECTIONS:
        raise InputError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    names = _layer_list(layers)
    classifier = load_classifier(model, **model_settings).to(device)
    if target is not None:
        target = class_index(target, class_names(classifier, classifier.num_classes))
    if names is not None:
        resolve_layers(classifier, names)
    mask_explainer = MinimalMask.load(explainer, classifier) if explainer is not None else None
    if mask_explainer is not None:
        size = mask_explainer.image_size or classifier.input_size

        def load(path: str | os.PathLike) -> torch.Tensor:
            return read_image_tensor(path, mask_explainer.in_chans, size)
    else:
        def load(path: str | os.PathLike) -> torch.Tensor:
            return classifier.preprocess.load(path)[None]
    x = load(image).to(device)
    reference_images = None
    cut = default_sufficient(selection, sufficient)
    if (faithfulness or selection == "attribution" or cut) and reference is not None:
        from ..data.imagefolder import find_image_files

        loaded = [load(path) for path in find_image_files(reference)[1]]
        if any(r.shape != x.shape for r in loaded):
            odd = next(r for r in loaded if r.shape != x.shape)
            raise InputError(f"the reference images must load to the image's shape {tuple(x.shape[1:])}, got one of "
                             f"{tuple(odd.shape[1:])} (a model without a fixed input size reads files at their own size)")
        reference_images = torch.cat(loaded).to(device)

    pictures = {"image.png": x[0]}
    extra: dict[str, Any] = {"image": str(image), "model": os.fspath(model), "input": "image"}
    if selection == "attribution" or cut:  # where the attribution's path started, what the cut ablated to
        extra["reference"] = str(reference) if reference is not None else "blur(x)"
    if mask_explainer is not None:
        mask, e = mask_explainer.explain(x)
        with torch.no_grad():
            target = _check_target(target, classifier.num_classes)
            if target is None:
                target = int(classifier(x).argmax(dim=1))
        pictures.update({"mask.png": mask[0], "explanation.png": e[0]})
        extra.update({"input": "explanation", "explainer": str(explainer), "mask_area": round(float(mask.mean()), 4)})
        shown = e
    else:
        shown = x
    graph = readout(classifier, shown, target=target, layers=names, top_k=top_k, share=share,
                    threshold=threshold, edge_top_k=edge_top_k, other_classes=other_classes, selection=selection,
                    reference=reference_images, sufficient=cut)
    graph.graph.update(extra)
    report = None
    if faithfulness:
        report = circuit_faithfulness(classifier, shown, graph, reference=reference_images, ablation=ablation, single=True)
        for node, drop in report.pop("single_drops")[0].items():
            graph.nodes[node].update(single_drop=drop, necessary=drop is not None and drop >= NECESSARY_DROP)
        report.update({"input": extra["input"], "necessary_drop": NECESSARY_DROP,
                       "necessary": sorted(n for n, d in graph.nodes(data=True) if d.get("necessary")),
                       "reference": str(reference) if reference is not None else "blur(x)"})
        if mask_explainer is not None:
            with torch.no_grad():
                explained = int(classifier(shown).argmax(dim=1))
            report["explanation"] = {"mask_area": extra["mask_area"], "empty": bool(mask.sum() == 0),
                                     "keeps_label": explained == target, "predicted": explained}

    with atomic_dir(out, overwrite=overwrite) as tmp:
        for filename, picture_tensor in pictures.items():
            save_image_png(picture_tensor, tmp / filename)
        write_json(tmp / "circuit.json", circuit_to_json(graph))
        if report is not None:
            write_json(tmp / "faithfulness.json", report)
        circuit_figure(graph, tmp / "circuit.png", image=shown[0])
    return Path(out)
