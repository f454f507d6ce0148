"""Faithfulness of a circuit readout (:func:`sparsex.explainers.circuit.readout`, arXiv 2509.25686):
does the circuit it draws carry the decision? Measured by ablation, the way circuit-discovery work
measures a circuit (Wang et al. 2022, "Interpretability in the Wild", arXiv 2211.00593: mean
ablation over a reference distribution; Conmy et al. 2023, ACDC).

**The circuit** ``C`` is, at each read layer ``L``, the set ``C_L`` of channels the readout keeps
(its channel nodes). **Ablation sites**: a forward hook on the module where the readout measured
the layer (``graph.graph["measured_at"]``: after its BatchNorm and activation) replaces channels of
that module's output ``y_L (B, C_L, h, w)`` (or ``(B, C_L)`` for a linear layer); all read layers
are hooked in the same forward pass, so an upstream ablation reaches the downstream layers.

**Ablation value** of channel ``c``: ``mean`` ablation replaces ``y_L[c]`` by its mean over a
reference set ``R``, position by position, ``mu_L[c, i, j] = (1/|R|) sum_{r in R} y_L(x_r)[c, i, j]``;
``zero`` ablation by 0. The default reference is the blurred copies ``blur(x)`` of the images
themselves (:func:`sparsex.perturb.blur`, the baseline of the mask explanation
``e = m x + (1 - m) blur(x)``): a channel then carries what it carries once the image's detail is
gone. Pass a reference set of other images (e.g. training images) for the dataset mean.

With ``z_t(x)`` the target logit, ``p_t(x)`` its softmax probability and ``z_t^S(x)`` the logit
when only the channels in ``S`` (per layer) are kept and all others of the read layers are
ablated, ``z_t^{-S}(x)`` when the channels in ``S`` are ablated and the others kept:

- **sufficiency** of the circuit: ``suff_logit = z_t^C / z_t`` (the fraction of the target logit
  that remains), ``suff_probability = p_t^C`` beside ``p_t``, and ``suff_label = [argmax z^C = t]``;
- **necessity**: ``drop(S) = (z_t - z_t^{-S}) / z_t``, for ``S = C`` (the circuit), ``S`` = the same
  number of channels per layer drawn uniformly at random (``random_draws`` draws, seeded; the
  mean over draws) and ``S`` = the same number of channels per layer with the highest activation
  ``a_L[c] = mean_{i,j} y_L[c, i, j]`` (the obvious baseline);
- **single drops**: ``drop({c})`` for each circuit channel alone (``single=True``).

The ratios divide by ``z_t``; they are computed on the images with ``z_t > 0`` only (a logit is
defined up to a constant shared by all classes, so a ratio of logits is meaningful only where the
clean logit is clearly positive, as it is for a confidently predicted class) and the counts say how
many. Means are over images.

**How the circuit differs from the activation baseline.** The readout's nodes are chosen by
activation: the ``top_k`` channels with the highest ``a_L`` among those above ``threshold`` times
the layer's largest. The activation baseline takes exactly ``|C_L|`` channels by ``a_L`` with no
threshold, so the two sets are the same channels (``activation_same`` says on what fraction of the
(image, layer) pairs), unless activations tie or the hooked output is not where the readout
measured (a functional activation in the model's own forward, which no module returns). The
baseline is reported so that this is visible, not assumed. A readout with
``selection="attribution"`` keeps the channels with the highest attribution to the target logit
instead (:mod:`~sparsex.explainers.circuit_sites`); ``same`` then says how often those are the
most active ones.

:func:`faithfulness_curve` repeats this over the circuit size ``k`` (top-k per layer) and reports
the area under each curve over the fraction of the read layers' channels kept.
:func:`part_overlap` measures, on the part world, whether a circuit channel's activation map lies
on the parts that define the class more than chance.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int
from ..errors import InputError
from ..inference import DEFAULT_BATCH, batch_slices, check_model
from .circuit import DEFAULT_THRESHOLD, readout
from .circuit_sites import ReferenceMeans, check_batch, hooked, reference_images, reference_means

ABLATIONS = ("mean", "zero")
#: circuit sizes (channels per layer) of :func:`faithfulness_curve`, cut to the widest read layer
DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: a circuit channel is marked necessary when ablating it alone drops the target logit by this fraction
NECESSARY_DROP = 0.05
#: :func:`faithfulness_curve`'s ``sufficient_k``: the smallest k whose circuits keep the label on this share of images
SUFFICIENT_LABEL = 0.9


def circuit_channels(circuit: Any) -> tuple[dict[str, list[int]], dict[str, str], int]:
    """``(channels, measured_at, target)`` of a readout graph or its :func:`circuit_to_json` dict:
    per read layer the channels of its channel nodes in the order the readout picked them (highest
    ``attribution`` first where the nodes carry one, else most active first); the module each layer
    was measured at; the target class."""
    if hasattr(circuit, "nodes") and hasattr(circuit, "graph"):
        meta, nodes = circuit.graph, [{"id": n, **d} for n, d in circuit.nodes(data=True)]
    elif isinstance(circuit, dict) and isinstance(circuit.get("nodes"), list):
        meta, nodes = circuit, circuit["nodes"]
    else:
        raise InputError(f"a circuit must be a readout() graph or its circuit_to_json dict, got {type(circuit).__name__}")
    layers, measured_at, target = meta.get("layers"), meta.get("measured_at"), meta.get("target")
    if not isinstance(layers, list) or not isinstance(measured_at, dict) or not isinstance(target, int):
        raise InputError("a circuit needs the readout's 'layers', 'measured_at' and 'target' (read it with readout())")
    channels: dict[str, list[tuple[float, int]]] = {layer: [] for layer in layers}
    for node in nodes:
        if node.get("kind") == "channel" and node.get("layer") in channels:
            rank = node["attribution"] if "attribution" in node else node.get("activation", 0.0)
            channels[node["layer"]].append((-float(rank), int(node["channel"])))
    return {layer: [c for _, c in sorted(kept)] for layer, kept in channels.items()}, dict(measured_at), target


def _per_image(circuits: Any, count: int) -> list:
    """One circuit per image: a list of ``count``, or one circuit shared by all."""
    if isinstance(circuits, (list, tuple)):
        if len(circuits) != count:
            raise InputError(f"give one circuit per image: {len(circuits)} circuits for {count} images")
        return list(circuits)
    return [circuits] * count


class _Ablation:
    """The hooked model, the ablation values and the clean pass of a set of images."""

    def __init__(self, model: nn.Module, images: torch.Tensor, layers: list[str], measured_at: dict[str, str],
                 reference: torch.Tensor | None, ablation: str, batch_size: int) -> None:
        self.model, self.images, self.batch_size = model, images, batch_size
        self._hooks = ExitStack()
        self.sites = self._hooks.enter_context(hooked(model, layers, measured_at))
        try:
            self._measure(layers, measured_at, reference, ablation)
        except BaseException:
            self.close()
            raise

    def _measure(self, layers: list[str], measured_at: dict[str, str], reference: Any, ablation: str) -> None:
        """The ablation values (``fill``), and the clean logits and activations ``a_L`` of the images."""
        model, images, batch_size = self.model, self.images, self.batch_size
        self.fill: dict[str, torch.Tensor | None] = {layer: None for layer in layers}
        if ablation == "mean" and isinstance(reference, ReferenceMeans):
            reference.check(measured_at)
            self.fill = {layer: reference.means[layer] for layer in layers}
        elif ablation == "mean":
            self.fill = self.sites.means(model, reference, batch_size)
        logits, activations = [], {layer: [] for layer in layers}
        for part in batch_slices(len(images), batch_size):
            logits.append(self.sites.run(model, images[part], capture=True))
            for layer in layers:
                out = self.sites.captured[layer]
                activations[layer].append((out.flatten(2).mean(dim=2) if out.dim() > 2 else out).to("cpu", torch.float64))
        self.logits = torch.cat(logits)
        self.activations = {layer: torch.cat(acts) for layer, acts in activations.items()}  # a_L (B, C_L)
        self.widths = {layer: acts.shape[1] for layer, acts in self.activations.items()}

    def close(self) -> None:
        """Remove the hooks; the model's modes and parameter flags are as before."""
        self._hooks.close()

    def logits_keeping(self, keep: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, K)`` with, at each layer, the channels where ``keep[layer] (B, C_L)`` is False ablated."""
        out = []
        for part in batch_slices(len(self.images), self.batch_size):
            plan = {layer: (mask[part], self.fill[layer]) for layer, mask in keep.items()}
            out.append(self.sites.run(self.model, self.images[part], plan))
        return torch.cat(out)

    def masks(self, chosen: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """``(B, C_L)`` booleans, True on each image's chosen channels."""
        masks = {layer: torch.zeros(len(chosen), width, dtype=torch.bool) for layer, width in self.widths.items()}
        for row, per_layer in enumerate(chosen):
            for layer, channels in per_layer.items():
                masks[layer][row, channels] = True
        return masks


def _check_settings(ablation: Any, random_draws: Any, seed: Any, batch_size: Any) -> None:
    if ablation not in ABLATIONS:
        raise InputError(f"ablation must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
    check_int(random_draws, "random_draws", 1)
    check_int(seed, "seed")
    check_int(batch_size, "batch_size", 1)


def _reference(images: torch.Tensor, reference: Any, ablation: str) -> torch.Tensor | None:
    return None if ablation == "zero" else reference_images(images, reference)


def _mean(values: torch.Tensor) -> float | None:
    """The mean of the finite values, None when there are none."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else None


def _ratios(numerator: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``numerator / clean`` where ``clean > 0``, NaN elsewhere."""
    return torch.where(clean > 0, numerator / clean.clamp_min(1e-300), torch.full_like(clean, math.nan))


def circuit_faithfulness(model: nn.Module, images: torch.Tensor, circuit: Any, reference: torch.Tensor | None = None,
                         ablation: str = "mean", random_draws: int = 20, seed: int = 0, single: bool = False,
                         batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Sufficiency and necessity of a circuit (module docstring: the definitions) on ``images``.

    ``images`` ``(B, C, H, W)`` (or one ``(C, H, W)``); ``circuit`` one :func:`readout` graph (or its
    :func:`~sparsex.explainers.circuit.circuit_to_json` dict) shared by all images, e.g. a class's,
    or a list of one per image, e.g. each image's own readout (all of the same layers). The target
    of each image is its circuit's ``target``. ``reference`` ``(R, C, H, W)``: the images whose mean
    activations replace ablated channels (default ``blur(images)``; unused for ``ablation="zero"``),
    or their :class:`~sparsex.explainers.circuit_sites.ReferenceMeans`.
    ``single=True`` also ablates each circuit channel alone.

    Returns a JSON-ready dict: ``images``, ``positive_logit_images`` (``z_t > 0``: the ratios'
    images), ``ablation``, ``reference_images``, ``layers``, ``layer_channels`` (``C_L``),
    ``circuit_channels`` (mean ``|C_L|``), ``clean`` (``logit``, ``probability``, ``label``: the
    fraction with ``argmax = t``), ``sufficiency`` (``logit``, ``probability``, ``label``),
    ``necessity`` (``drop``, ``label_lost``), ``random`` (``drop``, ``drop_std`` over draws,
    ``draws``, ``seed``), ``activation`` (``drop``, ``same``: the fraction of (image, layer) pairs
    where its channels are the circuit's), ``necessity_over_random``, ``per_image`` (each image's
    figures) and with ``single`` each image's ``single_drops`` ``{node id: drop}``. Bad input
    raises a one-line :class:`~sparsex.errors.InputError`.
    """
    check_model(model)
    _check_settings(ablation, random_draws, seed, batch_size)
    images = check_batch(images, "images")
    circuits = [circuit_channels(c) for c in _per_image(circuit, len(images))]
    layers, measured_at = list(circuits[0][0]), circuits[0][1]
    if any(list(channels) != layers for channels, _, _ in circuits):
        raise InputError("every circuit must read the same layers")
    ref = _reference(images, reference, ablation)
    run = _Ablation(model, images, layers, measured_at, ref, ablation, batch_size)
    try:
        chosen = [channels for channels, _, _ in circuits]
        for layer in layers:
            bad = next((c for per_layer in chosen for c in per_layer[layer] if not 0 <= c < run.widths[layer]), None)
            if bad is not None:
                raise InputError(f"circuit channel {layer}:{bad} is out of range: the layer has {run.widths[layer]} channels")
        targets = torch.tensor([target for _, _, target in circuits])
        num_classes = run.logits.shape[1]
        if not bool(((targets >= 0) & (targets < num_classes)).all()):
            raise InputError(f"a circuit's target is out of range for a classifier with {num_classes} classes")
        rows = torch.arange(len(images))
        clean = run.logits[rows, targets]
        in_circuit = run.masks(chosen)
        kept = run.logits_keeping(in_circuit)
        without = run.logits_keeping({layer: ~mask for layer, mask in in_circuit.items()})

        generator = torch.Generator().manual_seed(seed)
        random_logits = []
        for _ in range(random_draws):
            drawn = [{layer: torch.randperm(run.widths[layer], generator=generator)[:len(per_layer[layer])].tolist()
                      for layer in layers} for per_layer in chosen]
            random_logits.append(run.logits_keeping({layer: ~m for layer, m in run.masks(drawn).items()})[rows, targets])
        by_activation = [{layer: torch.argsort(run.activations[layer][row], descending=True, stable=True)
                          [:len(per_layer[layer])].tolist() for layer in layers} for row, per_layer in enumerate(chosen)]
        top_masks = run.masks(by_activation)
        top_logits = run.logits_keeping({layer: ~m for layer, m in top_masks.items()})[rows, targets]
        same = torch.stack([(top_masks[layer] == in_circuit[layer]).all(dim=1) for layer in layers]).double().mean()

        drop = _ratios(clean - without[rows, targets], clean)
        random_drops = torch.stack([_ratios(clean - z, clean) for z in random_logits])  # (draws, B)
        random_drop = random_drops.mean(dim=0)
        top_drop = _ratios(clean - top_logits, clean)
        suff_logit = _ratios(kept[rows, targets], clean)
        p_clean, p_kept = run.logits.softmax(dim=1)[rows, targets], kept.softmax(dim=1)[rows, targets]
        label_clean, label_kept = run.logits.argmax(dim=1) == targets, kept.argmax(dim=1) == targets
        label_lost = without.argmax(dim=1) != targets
        per_draw = [_mean(d) for d in random_drops]
        per_draw = torch.tensor([d for d in per_draw if d is not None], dtype=torch.float64)
        result: dict[str, Any] = {
            "images": len(images), "positive_logit_images": int((clean > 0).sum()), "ablation": ablation,
            "reference_images": 0 if ref is None else ref.images if isinstance(ref, ReferenceMeans) else len(ref),
            "layers": layers, "measured_at": measured_at,
            "layer_channels": dict(run.widths),
            "circuit_channels": {layer: float(in_circuit[layer].double().sum(dim=1).mean()) for layer in layers},
            "clean": {"logit": float(clean.mean()), "probability": float(p_clean.mean()),
                      "label": float(label_clean.double().mean())},
            "sufficiency": {"logit": _mean(suff_logit), "probability": float(p_kept.mean()),
                            "label": float(label_kept.double().mean())},
            "necessity": {"drop": _mean(drop), "label_lost": float(label_lost.double().mean())},
            "random": {"drop": _mean(random_drop), "drop_std": float(per_draw.std()) if len(per_draw) > 1 else 0.0,
                       "draws": random_draws, "seed": seed},
            "activation": {"drop": _mean(top_drop), "same": float(same)},
        }
        necessity, random = result["necessity"]["drop"], result["random"]["drop"]
        result["necessity_over_random"] = necessity / random if necessity is not None and random else None
        result["per_image"] = [
            {"target": int(targets[i]), "clean_logit": float(clean[i]), "clean_probability": float(p_clean[i]),
             "sufficiency_logit": _finite(suff_logit[i]), "sufficiency_probability": float(p_kept[i]),
             "sufficiency_label": bool(label_kept[i]), "necessity_drop": _finite(drop[i]),
             "random_drop": _finite(random_drop[i]), "activation_drop": _finite(top_drop[i])}
            for i in range(len(images))]
        if single:
            result["single_drops"] = [_single_drops(run, i, chosen[i], int(targets[i])) for i in range(len(images))]
    finally:
        run.close()
    return result


def _finite(value: torch.Tensor) -> float | None:
    return float(value) if math.isfinite(float(value)) else None


def _single_drops(run: _Ablation, row: int, chosen: dict[str, list[int]], target: int) -> dict[str, float | None]:
    """``drop({c})`` of each circuit channel of image ``row``: one forward pass per channel, batched."""
    nodes = [(layer, c) for layer, channels in chosen.items() for c in channels]
    if not nodes:
        return {}
    keep = {layer: torch.ones(len(nodes), width, dtype=torch.bool) for layer, width in run.widths.items()}
    for index, (layer, c) in enumerate(nodes):
        keep[layer][index, c] = False
    logits = []
    x = run.images[row:row + 1]
    for part in batch_slices(len(nodes), run.batch_size):
        plan = {layer: (mask[part], run.fill[layer]) for layer, mask in keep.items()}
        logits.append(run.sites.run(run.model, x.expand(part.stop - part.start, *x.shape[1:]), plan))
    clean = run.logits[row, target]
    drops = _ratios(clean - torch.cat(logits)[:, target], clean.expand(len(nodes)))
    return {f"{layer}:{c}": _finite(d) for (layer, c), d in zip(nodes, drops)}


def _as_circuit(channels: dict[str, list[int]], measured_at: dict[str, str], target: int) -> dict[str, Any]:
    """A circuit dict (as :func:`circuit_channels` reads) keeping ``channels`` per layer, in that order."""
    return {"layers": list(channels), "measured_at": measured_at, "target": target,
            "nodes": [{"kind": "channel", "layer": layer, "channel": c, "activation": -float(rank)}
                      for layer, kept in channels.items() for rank, c in enumerate(kept)]}


def _area(points: list[tuple[float, float]]) -> float:
    """Trapezoid area under ``(x, y)`` points over ``x`` (sorted by ``x``)."""
    points = sorted(points)
    return float(sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:])))


def _widths(model: nn.Module, x: torch.Tensor, layers: list[str], measured_at: dict[str, str]) -> dict[str, int]:
    """The number of channels of each read layer's measured output."""
    with hooked(model, layers, measured_at) as sites:
        sites.run(model, x, capture=True)
    return {layer: sites.captured[layer].shape[1] for layer in layers}


def faithfulness_curve(model: nn.Module, images: torch.Tensor, reference: torch.Tensor | None = None,
                       targets: Sequence[int] | None = None, ks: Sequence[int] | None = None,
                       layers: Sequence[str] | None = None, threshold: float = DEFAULT_THRESHOLD, ablation: str = "mean",
                       random_draws: int = 20, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                       selection: str = "activation") -> dict[str, Any]:
    """Sufficiency and necessity over the circuit size: for each ``k`` in ``ks`` (default
    :data:`DEFAULT_KS` up to the widest read layer) each image's readout at ``top_k = k`` (target
    ``targets[i]``, default the predicted class; ``layers``, ``threshold`` and ``selection`` as
    :func:`readout`'s, an attribution starting from the mean of ``reference``, default
    ``blur(images)``, as the mean ablation does) is
    measured by :func:`circuit_faithfulness`. A readout at ``top_k = k`` keeps the first ``k``
    channels (by activation or attribution) of one at a larger ``top_k``, so each image is read once
    (without the readout's ``sufficient`` cut: the curve is over the size).

    The x axis is the fraction of the read layers' channels in the circuit,
    ``x = (1/B) sum_i sum_L |C_L^i| / sum_L C_L``; the curves are closed with the empty circuit
    (``x = 0``: every channel of the read layers ablated for sufficiency; necessity drop 0) and the
    whole layers (``x = 1``: nothing ablated for sufficiency; the necessity drop when every
    channel is ablated, for the circuit and the random channels alike), both measured. ``auc`` is
    the trapezoid area under each curve over ``x in [0, 1]``: ``sufficiency_logit``,
    ``sufficiency_label``, ``necessity_drop`` and ``random_drop``. Returns ``points`` (per ``k``:
    ``fraction`` and the four figures), ``empty``, ``full``, ``auc``, ``sufficient_k`` (the
    smallest ``k`` of ``ks`` whose circuits keep the label on at least :data:`SUFFICIENT_LABEL` of
    the images, None if none does), ``layers``, ``layer_channels``. A ``k`` outside ``[1, widest layer]`` raises a one-line
    :class:`~sparsex.errors.InputError`.
    """
    check_model(model)
    _check_settings(ablation, random_draws, seed, batch_size)
    images = check_batch(images, "images")
    if targets is not None and len(targets) != len(images):
        raise InputError(f"give one target per image: {len(targets)} targets for {len(images)} images")
    first = circuit_channels(readout(model, images[0], target=None if targets is None else targets[0], layers=layers,
                                     top_k=1, threshold=threshold))
    read_layers, measured_at = list(first[0]), first[1]
    widths = _widths(model, images[:1], read_layers, measured_at)
    widest = max(widths.values())
    if ks is None:
        ks = [k for k in DEFAULT_KS if k <= widest]
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise InputError(f"ks must be a non-empty list of circuit sizes, got {ks!r}")
    ks = sorted({check_int(k, f"circuit size k (channels per layer, 1 to the widest read layer's {widest})", 1, widest)
                 for k in ks})
    if selection == "attribution" and not isinstance(reference, ReferenceMeans):  # the means once, not per readout
        reference = reference_means(model, reference_images(images, reference), read_layers, measured_at, batch_size)
    circuits = [circuit_channels(readout(model, images[i], target=None if targets is None else targets[i],
                                         layers=read_layers, top_k=max(ks), threshold=threshold, selection=selection,
                                         reference=reference, sufficient=False))
                for i in range(len(images))]
    settings = dict(reference=reference, ablation=ablation, random_draws=random_draws, seed=seed, batch_size=batch_size)
    total = sum(widths.values())
    points = []
    for k in ks:
        measured = circuit_faithfulness(
            model, images, [_as_circuit({layer: kept[:k] for layer, kept in ch.items()}, at, t) for ch, at, t in circuits],
            **settings)
        points.append({"k": k, "fraction": sum(measured["circuit_channels"].values()) / total,
                       "sufficiency_logit": measured["sufficiency"]["logit"],
                       "sufficiency_label": measured["sufficiency"]["label"],
                       "necessity_drop": measured["necessity"]["drop"], "random_drop": measured["random"]["drop"]})
    ends = {**settings, "random_draws": 1}
    empty = circuit_faithfulness(model, images, [_as_circuit({layer: [] for layer in ch}, at, t) for ch, at, t in circuits],
                                 **ends)
    full = circuit_faithfulness(model, images, [_as_circuit({layer: list(range(widths[layer])) for layer in ch}, at, t)
                                                for ch, at, t in circuits], **ends)
    first_point = {"k": 0, "fraction": 0.0, "sufficiency_logit": empty["sufficiency"]["logit"],
                   "sufficiency_label": empty["sufficiency"]["label"], "necessity_drop": 0.0, "random_drop": 0.0}
    last_point = {"k": widest, "fraction": 1.0, "sufficiency_logit": full["sufficiency"]["logit"],
                  "sufficiency_label": full["sufficiency"]["label"], "necessity_drop": full["necessity"]["drop"],
                  "random_drop": full["necessity"]["drop"]}
    auc = {key: _area([(p["fraction"], p[key]) for p in [first_point, *points, last_point] if p[key] is not None])
           for key in ("sufficiency_logit", "sufficiency_label", "necessity_drop", "random_drop")}
    sufficient_k = next((p["k"] for p in points if p["sufficiency_label"] >= SUFFICIENT_LABEL), None)
    return {"images": len(images), "ablation": ablation, "threshold": threshold, "selection": selection,
            "sufficient_k": sufficient_k, "layers": read_layers,
            "layer_channels": widths, "points": points, "empty": first_point, "full": last_point, "auc": auc}


def part_overlap(model: nn.Module, images: torch.Tensor, part_masks: torch.Tensor, circuit: Any,
                 batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Whether circuit channels look at the parts that define the class (the part world, where a
    class is its six part variants, so the class's parts are the union of the item's part masks).

    For circuit channel ``c`` of layer ``L`` on image ``x`` with part mask ``P (H, W)`` (0/1):
    ``A = upsample_bilinear(relu(y_L[c]))`` to ``(H, W)``, ``inside = sum(A P) / sum(A)``, against
    chance ``share = mean(P)``, the parts' share of the image. Channels with no activation mass are
    skipped. ``images`` ``(B, C, H, W)``; ``part_masks`` ``(B, H, W)`` or ``(B, parts, H, W)``
    (united); ``circuit`` one graph shared by all images or one per image. Returns ``inside`` and
    ``share`` (means over the (image, channel) pairs), ``ratio = inside / share``,
    ``above_chance`` (the fraction of pairs with ``inside > share``), ``pairs`` and per layer
    ``inside``.
    """
    check_model(model)
    check_int(batch_size, "batch_size", 1)
    images = check_batch(images, "images")
    if not isinstance(part_masks, torch.Tensor) or part_masks.dim() not in (3, 4) or part_masks.shape[0] != len(images) \
            or part_masks.shape[-2:] != images.shape[-2:]:
        shape = tuple(part_masks.shape) if isinstance(part_masks, torch.Tensor) else type(part_masks).__name__
        raise InputError(f"part_masks must be (B, H, W) or (B, parts, H, W) matching the images {tuple(images.shape)}, got {shape}")
    masks = (part_masks.flatten(1, -3).any(dim=1) if part_masks.dim() == 4 else part_masks.bool()).double()
    circuits = [circuit_channels(c) for c in _per_image(circuit, len(images))]
    layers, measured_at = list(circuits[0][0]), circuits[0][1]
    inside, share, per_layer = [], [], {layer: [] for layer in layers}
    with hooked(model, layers, measured_at) as sites:
        for part in batch_slices(len(images), batch_size):
            sites.run(model, images[part], capture=True)
            for offset, (channels, _, _) in enumerate(circuits[part]):
                mask = masks[part.start + offset]
                for layer in layers:
                    out = sites.captured[layer][offset]
                    if out.dim() != 3 or not channels[layer]:
                        continue
                    maps = F.interpolate(out[channels[layer]].clamp_min(0)[None].double(), size=mask.shape,
                                         mode="bilinear", align_corners=False)[0].clamp_min(0).cpu()
                    mass = maps.flatten(1).sum(dim=1)
                    for value, total in zip((maps * mask).flatten(1).sum(dim=1), mass):
                        if total > 0:
                            inside.append(float(value / total))
                            per_layer[layer].append(inside[-1])
                            share.append(float(mask.mean()))
    if not inside:
        raise InputError("no circuit channel has a spatial activation map with any mass (linear layers only, or all zero)")
    mean_inside, mean_share = sum(inside) / len(inside), sum(share) / len(share)
    return {"pairs": len(inside), "inside": mean_inside, "share": mean_share,
            "ratio": mean_inside / mean_share if mean_share > 0 else None,
            "above_chance": sum(i > s for i, s in zip(inside, share)) / len(inside),
            "per_layer": {layer: sum(v) / len(v) for layer, v in per_layer.items() if v}}
