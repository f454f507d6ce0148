"""The figure of a circuit readout (:func:`sparsex.explainers.circuit.readout`): one column per
layer from left to right, the class nodes in the rightmost column (the target class highlighted),
edge width by score; after an ablation test (``sparsex circuit --faithfulness``) each channel's own
logit drop under it and the necessary channels outlined in bold."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ..errors import InputError
from ..io import atomic_file

if TYPE_CHECKING:
    import networkx as nx

TARGET_COLOUR = "#c0392b"
CLASS_COLOUR = "#7f8c8d"
NECESSARY_COLOUR = "#e67e22"


def _short(name: str, parts: int = 3) -> str:
    """The last ``parts`` dotted components of a module name (column titles)."""
    pieces = str(name).split(".")
    return ("..." if len(pieces) > parts else "") + ".".join(pieces[-parts:])


def circuit_layout(graph: "nx.DiGraph") -> dict[Any, tuple[float, float]]:
    """Node positions ``{node: (x, y)}``: ``x`` the node's ``depth`` (layer index; classes last),
    ``y`` its rank in its column, most active at the top, each column centred on 0."""
    columns: dict[int, list[tuple[Any, dict[str, Any]]]] = {}
    for node, attrs in graph.nodes(data=True):
        columns.setdefault(int(attrs.get("depth", 0)), []).append((node, attrs))
    positions = {}
    for depth, members in columns.items():
        members.sort(key=lambda item: (not item[1].get("target", False), -float(item[1].get("activation", 0.0)), str(item[0])))
        for rank, (node, _) in enumerate(members):
            positions[node] = (float(depth), (len(members) - 1) / 2 - rank)
    return positions


def circuit_figure(graph: "nx.DiGraph", out: str | os.PathLike, image: torch.Tensor | None = None,
                   title: str | None = None, dpi: int = 110) -> Path:
    """Save ``graph`` as a PNG: a layered layout left to right (:func:`circuit_layout`), channel nodes
    coloured by their activation relative to their layer's largest and labelled with the channel
    index, class nodes as squares (the target red), edge width and opacity by score relative to the
    highest score between the same two columns (scores of different layer pairs have different
    scales). A channel node with ``single_drop`` (the fraction of the target logit lost when it
    alone is ablated, :func:`sparsex.explainers.circuit_faithfulness.circuit_faithfulness`) shows it
    under the node, and one with ``necessary`` true gets a thick orange outline. ``image``
    ``(C, H, W)`` or ``(1, C, H, W)`` in ``[0, 1]``, if given, is shown on the left."""
    if not hasattr(graph, "nodes") or not hasattr(graph, "edges"):
        raise InputError(f"circuit_figure needs a networkx graph from readout(), got {type(graph).__name__}")
    meta = graph.graph
    layers = list(meta.get("layers") or [])
    depths = sorted({int(d.get("depth", 0)) for _, d in graph.nodes(data=True)} | set(range(len(layers))))
    has_classes = any(d.get("kind") == "class" for _, d in graph.nodes(data=True))
    columns = max(depths, default=0) + 1 if depths else 1
    if has_classes:
        columns = max(columns, len(layers) + 1)
    positions = circuit_layout(graph)
    tallest = max([sum(1 for p in positions.values() if p[0] == d) for d in range(columns)] + [1])

    width = 1.0 + 2.3 * columns + (1.8 if image is not None else 0.0)
    height = max(3.2, 0.42 * tallest + 1.6)
    fig = Figure(figsize=(width, height))
    left = 1.8 / width if image is not None else 0.02
    ax = fig.add_axes([left, 0.04, 0.97 - left, 0.84])
    ax.set_axis_off()

    if image is not None:
        img = image.detach().cpu().float()
        if img.dim() == 4:
            img = img[0]
        arr = img.clamp(0, 1).permute(1, 2, 0).numpy()
        side = min(1.5 / width, 0.8)
        inset = fig.add_axes([0.1 / width, 0.5 - side * width / height / 2, side, side * width / height])
        inset.imshow(arr[:, :, 0] if arr.shape[2] == 1 else arr, cmap="gray", vmin=0, vmax=1)
        inset.set_title("input: " + str(meta.get("input", "image")), fontsize=8)
        inset.set_xticks([])
        inset.set_yticks([])

    # edges, normalised per pair of columns
    groups: dict[int, list[tuple[Any, Any, float]]] = {}
    for a, b, attrs in graph.edges(data=True):
        groups.setdefault(int(positions[a][0]), []).append((a, b, float(attrs.get("score", 0.0))))
    for depth, edges in groups.items():
        peak = max((s for _, _, s in edges), default=0.0) or 1.0
        segments = [[positions[a], positions[b]] for a, b, _ in edges]
        rel = [max(s, 0.0) / peak for _, _, s in edges]
        into_target = [bool(graph.nodes[b].get("target", False)) for _, b, _ in edges]
        colours = [(0.75, 0.22, 0.17, 0.25 + 0.6 * r) if t else (0.2, 0.3, 0.5, 0.2 + 0.6 * r) for r, t in zip(rel, into_target)]
        ax.add_collection(LineCollection(segments, linewidths=[0.4 + 5.6 * r for r in rel], colors=colours, zorder=1))

    # nodes
    cmap = colormaps["viridis"]
    for node, attrs in graph.nodes(data=True):
        x, y = positions[node]
        if attrs.get("kind") == "class":
            colour = TARGET_COLOUR if attrs.get("target") else CLASS_COLOUR
            ax.scatter([x], [y], s=340, marker="s", color=colour, zorder=3, edgecolors="black", linewidths=0.6)
            label = f"{attrs.get('name', attrs.get('channel'))}\nlogit {float(attrs.get('activation', 0.0)):.2f}"
            ax.text(x + 0.12, y, label, va="center", ha="left", fontsize=8,
                    fontweight="bold" if attrs.get("target") else "normal", zorder=4)
        else:
            rel = float(attrs.get("relative", 1.0))
            necessary = bool(attrs.get("necessary", False))
            ax.scatter([x], [y], s=300, color=cmap(0.15 + 0.85 * rel), zorder=3,
                       edgecolors=NECESSARY_COLOUR if necessary else "black", linewidths=3.0 if necessary else 0.5)
            ax.text(x, y, str(attrs.get("channel", "")), va="center", ha="center", fontsize=7,
                    color="white" if rel < 0.6 else "black", zorder=4)
            if attrs.get("single_drop") is not None:
                ax.text(x, y - 0.3, f"{-float(attrs['single_drop']):+.0%}", va="top", ha="center", fontsize=6,
                        color=NECESSARY_COLOUR if necessary else "dimgrey", fontweight="bold" if necessary else "normal",
                        zorder=4)

    top = (tallest - 1) / 2 + 0.8
    for depth in range(columns):
        if depth < len(layers):
            label = _short(layers[depth])
        else:
            label = "classes" if has_classes else ""
        ax.text(depth, top, label, ha="center", va="bottom", fontsize=8)
        if not any(p[0] == depth for p in positions.values()) and depth < len(layers):
            empty = "none kept\nby the cut" if meta.get("sufficient") else "no active\nchannels"
            ax.text(depth, 0, empty, ha="center", va="center", fontsize=7, color="grey")
    ax.set_xlim(-0.5, columns - 0.5 + (0.9 if has_classes else 0.0))
    ax.set_ylim(-(tallest - 1) / 2 - 0.7, top + 0.6)
    if title is None:
        target = meta.get("target")
        def named(index: Any, name: Any) -> str:
            return str(index) if name is None or str(name) == str(index) else f"{name} ({index})"

        title = (f"circuit for class {named(target, meta.get('target_name'))}; predicted "
                 f"{named(meta.get('predicted'), meta.get('predicted_name'))}: {graph.number_of_nodes()} nodes, "
                 f"{graph.number_of_edges()} edges")
        if meta.get("settings", {}).get("selection") == "attribution":
            title += "; channels by attribution to the class"
        if meta.get("sufficient") is not None:
            title += ("; the fewest that alone keep the label" if meta["sufficient"]
                      else f"; no part of the {meta.get('selected')} selected keeps the label alone")
        if any(d.get("single_drop") is not None for _, d in graph.nodes(data=True)):
            title += "\nunder each channel: the target logit's drop when it alone is ablated; outlined: necessary"
    fig.suptitle(title, fontsize=9)

    out = Path(out)
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return out
