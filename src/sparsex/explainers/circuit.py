"""Circuit readout (arXiv 2509.25686, "Minimalist Explanation Generation and Circuit Discovery"):
the channels and connections that carry a classifier's decision on one image, read from a single
forward pass of that image, or of its minimal explanation ``e = m * x + (1 - m) * blur(x)``.

:func:`readout` returns a ``networkx.DiGraph``:

- **nodes** are the *active channels* of a chain of convolution layers ``L_1, ..., L_n``. The
  activation of channel ``c`` of layer ``L`` is the spatial mean of its output,
  ``a_L[c] = mean_{i,j} y_L[c, i, j]``, where ``y_L`` is measured **after the layers that act on
  each channel alone and follow the convolution in the forward pass** (BatchNorm, the activation
  function, Identity, Dropout), i.e. post-norm, post-activation (small-cnn: the output of each
  block's ReLU; EfficientNet: after ``BatchNormAct2d``). Channel ``c`` is active when
  ``a_L[c] > threshold * max_c' a_L[c']`` and ``a_L[c] > 0``; the ``top_k`` most active channels of each
  layer are kept. Node id ``"<layer>:<channel>"``; attributes ``kind="channel"``, ``layer``, ``depth``
  (the layer's position), ``channel``, ``activation`` and ``relative`` (``a / max a``).
- **channel edges** join consecutive layers ``A -> B`` (``B`` a ``Conv2d`` that consumes ``A``'s
  channels): ``score(i -> o) = M_B[o, i] * a_A[i]`` with the kernel's absolute mass
  ``M_B[o, i] = sum_{u,v} |W_B[o, i, u, v]|`` (:func:`kernel_mass`; grouped and depthwise
  convolutions connect input ``i`` only to the outputs of its group, a depthwise one ``i -> i``).
  Attributes ``score`` and ``mass``.
- **class nodes and edges**: the last layer feeds the classifier's linear layer (global average
  pooling + linear, e.g. :class:`~sparsex.models.classifier.LinearProbe`):
  ``score(c -> k) = |W[k, c]| * f[c]`` with ``f`` the linear layer's input (the pooled features,
  equal to ``a_{L_n}`` for average pooling). Attributes ``score``, ``weight`` (``W[k, c]``) and
  ``contribution`` (``W[k, c] f[c]``, the channel's signed share of the logit). Class node id
  ``"class:<k>"``; attributes ``kind="class"``, ``layer`` (the linear layer's name), ``channel``
  (``k``), ``activation`` (the logit), ``name``, ``target``. The target class, and optionally the
  ``other_classes`` classes with the next highest logits, get class nodes.

Edges with score 0 are dropped; ``edge_top_k`` keeps the highest-scoring edges between each pair of
consecutive layers and into each class node. The graph's attributes (``graph.graph``) record the
target, the prediction, the layers, where each was measured and the settings;
:func:`circuit_to_json` turns it into a plain dict, :func:`circuit_from_json` back, and
:func:`sparsex.viz.circuit.circuit_figure` draws it.

**Which layers connect.** Two chosen layers ``A, B`` are consecutive when ``B`` is a ``Conv2d``, runs
after ``A``, no other convolution or linear layer runs between them, and ``B.in_channels`` equals
``A.out_channels``; what runs between them is assumed to keep channels apart (norms, activations,
pooling, residual additions). That is exact for plain chains (small-cnn) and an approximation across
residual additions and pooling, where ``B``'s input is not exactly ``A``'s measured output. A
layer name is a ``Conv2d`` or a module holding exactly one (a small-cnn block such as
``backbone.model.features.2``). By default (:func:`default_circuit_layers`) the last ``3``
convolutions that form such a chain and end at the one feeding the classifier (small-cnn: its three
blocks; EfficientNet-Lite0: the last block's depthwise and projection convolutions and the head
convolution).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from ..checks import check_images, check_int, check_number
from ..errors import InputError, SparsexError
from ..inference import check_model, class_index, class_names
from .hooks import resolve_layers

if TYPE_CHECKING:
    import networkx as nx

#: Default settings of :func:`readout`.
DEFAULT_TOP_K = 8
DEFAULT_THRESHOLD = 0.1
DEFAULT_LAYER_COUNT = 3

_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear)
_NOT_CHANNELWISE = (nn.Softmax, nn.Softmax2d, nn.LogSoftmax, nn.Softmin, nn.MultiheadAttention, nn.GLU)


def _channelwise(module: nn.Module) -> bool:
    """Modules that map each channel on its own, keeping the channel count (norms, activations,
    Identity, Dropout, timm's DropPath): what may follow a convolution before its output is read."""
    if isinstance(module, _NOT_CHANNELWISE):
        return False
    if isinstance(module, (nn.Identity, nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return True
    if type(module).__name__ == "DropPath":
        return True
    # torch.nn's activation modules, and activation modules of other libraries (timm.layers.activations)
    return any("activation" in cls.__module__ for cls in type(module).__mro__[:-2])


def kernel_mass(conv: nn.Conv2d) -> torch.Tensor:
    """``M (out_channels, in_channels)``, ``M[o, i] = sum_{u,v} |W[o, i', u, v]|``: how strongly input
    channel ``i`` feeds output channel ``o`` of ``conv``. For ``groups > 1`` the weight
    ``(out, in / groups, kh, kw)`` is placed block-diagonally (``i' = i - group(o) * in / groups``;
    0 outside ``o``'s group), so a depthwise convolution gives a diagonal matrix. On the CPU, float64."""
    if not isinstance(conv, nn.Conv2d):
        raise InputError(f"kernel_mass needs an nn.Conv2d, got {type(conv).__name__}")
    mass = conv.weight.detach().abs().sum(dim=(2, 3)).to("cpu", torch.float64)  # (out, in / groups)
    out_channels, in_per_group = mass.shape
    groups = conv.groups
    dense = torch.zeros(out_channels, in_per_group * groups, dtype=torch.float64)
    group_of = torch.arange(out_channels) // (out_channels // groups)
    columns = group_of[:, None] * in_per_group + torch.arange(in_per_group)[None, :]
    return dense.scatter_(1, columns, mass)


@dataclass
class _Trace:
    """What one forward pass of one image shows: modules in the order they finished (first run
    only), per-channel spatial means of every 4-D output, each linear layer's input and output."""

    order: list[str] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    channels: dict[str, torch.Tensor] = field(default_factory=dict)
    linear_in: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _check_image(x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"the image must be a torch.Tensor (C, H, W) or (1, C, H, W), got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    check_images(x, "image")
    if x.shape[0] != 1:
        raise InputError(f"the circuit readout reads one image at a time; got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
    if 0 in x.shape:
        raise InputError(f"the image is empty (shape {tuple(x.shape)})")
    return x


def _trace(model: nn.Module, x: torch.Tensor) -> _Trace:
    """Run ``model`` on ``x (1, C, H, W)`` once, with a hook on every module."""
    trace = _Trace()
    handles = []

    def hook(module: nn.Module, inputs: tuple, output: Any, name: str) -> None:
        if name in trace.position:
            return
        trace.position[name] = len(trace.order)
        trace.order.append(name)
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.is_floating_point():
            trace.channels[name] = output[0].detach().mean(dim=(1, 2)).to("cpu", torch.float64)  # before any in-place op
        if isinstance(module, nn.Linear) and inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() == 2:
            trace.linear_in[name] = inputs[0][0].detach().to("cpu", torch.float64)

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    except SparsexError:
        raise
    except (RuntimeError, ValueError) as e:  # a model that cannot take this image (size, channels, device)
        raise InputError(f"the model cannot run on an image of shape {tuple(x.shape)} (wrong size or channels?): "
                         f"{_first_line(e)}") from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 1:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(f"the circuit readout needs a model that returns logits (B, K); it returned {shape}")
    trace.logits = output[0].detach().to("cpu", torch.float64)
    return trace


def _convs(model: nn.Module, trace: _Trace) -> list[str]:
    """Names of the ``Conv2d`` layers that ran, in forward order."""
    modules = dict(model.named_modules())
    return [name for name in trace.order if isinstance(modules[name], nn.Conv2d)]


def _resolve_conv(model: nn.Module, name: str) -> str:
    """The ``Conv2d`` a layer name stands for: the module itself, or its only ``Conv2d``."""
    module = resolve_layers(model, [name])[name]
    if isinstance(module, nn.Conv2d):
        return name
    inner = [f"{name}.{sub}" for sub, m in module.named_modules() if sub and isinstance(m, nn.Conv2d)]
    if len(inner) == 1:
        return inner[0]
    hint = f"its convolutions: {', '.join(inner[:4])}{', ...' if len(inner) > 4 else ''}" if inner else "it holds none"
    raise InputError(f"circuit layer {name!r} is a {type(module).__name__}, not a Conv2d or a module with exactly one; {hint}")


def _measure_point(model: nn.Module, trace: _Trace, conv: str) -> str:
    """The module after ``conv`` whose output is read: the last of the channel-wise modules that
    finish right after it in the forward pass (norm, activation, ...), or ``conv`` itself."""
    modules = dict(model.named_modules())
    channels = modules[conv].out_channels
    point = conv
    for name in trace.order[trace.position[conv] + 1:]:
        if not _channelwise(modules[name]):
            break
        if name in trace.channels and trace.channels[name].numel() == channels:
            point = name
    return point


def _connection_problem(model: nn.Module, trace: _Trace, source: str, target: str) -> str | None:
    """Why conv ``target`` does not consume conv ``source``'s channels directly (None if it does)."""
    modules = dict(model.named_modules())
    a, b = modules[source], modules[target]
    if trace.position[target] < trace.position[source]:
        return f"{target} runs before {source}"
    between = [n for n in trace.order[trace.position[source] + 1:trace.position[target]] if isinstance(modules[n], _WEIGHTED)]
    if between:
        shown = ", ".join(between[:2]) + (", ..." if len(between) > 2 else "")
        return f"{len(between)} layer(s) with weights run between {source} and {target} ({shown})"
    if b.in_channels != a.out_channels:
        return f"{target} takes {b.in_channels} channels but {source} gives {a.out_channels}"
    return None


def _next_conv(model: nn.Module, trace: _Trace, conv: str) -> str | None:
    convs = _convs(model, trace)
    i = convs.index(conv)
    return convs[i + 1] if i + 1 < len(convs) else None


def _readout_linear(model: nn.Module, trace: _Trace, conv: str, point: str) -> tuple[str | None, str]:
    """The linear layer that reads ``conv``'s pooled channels and gives the logits, or ``(None, why)``."""
    modules = dict(model.named_modules())
    channels = modules[conv].out_channels
    for name in trace.order[trace.position[point] + 1:]:
        module = modules[name]
        if isinstance(module, nn.Linear):
            first = f"the first linear layer after it, {name},"
            if name not in trace.linear_in or module.in_features != channels:
                return None, f"{first} takes {module.in_features} features, not its {channels} channels"
            if module.out_features != trace.logits.numel():
                return None, f"{first} gives {module.out_features} outputs, not the {trace.logits.numel()} logits"
            return name, ""
        if isinstance(module, _WEIGHTED):
            return None, f"{name} runs between it and the classifier"
    return None, "no linear layer runs after it"


def _last_feeding_conv(model: nn.Module, trace: _Trace) -> str | None:
    """The last convolution that feeds the final linear layer directly, if any."""
    for conv in reversed(_convs(model, trace)):
        if _readout_linear(model, trace, conv, _measure_point(model, trace, conv))[0] is not None:
            return conv
    return None


def _chain_ending_at(model: nn.Module, trace: _Trace, last: str, count: int) -> list[str]:
    convs = _convs(model, trace)
    chain = [last]
    i = convs.index(last)
    while len(chain) < count and i > 0 and _connection_problem(model, trace, convs[i - 1], chain[0]) is None:
        i -= 1
        chain.insert(0, convs[i])
    return chain


def _default_layers(model: nn.Module, trace: _Trace, count: int) -> list[str]:
    convs = _convs(model, trace)
    if not convs:
        raise InputError(f"{type(model).__name__} runs no Conv2d layer; the circuit readout reads convolution channels")
    return _chain_ending_at(model, trace, _last_feeding_conv(model, trace) or convs[-1], count)


def _example_input(model: nn.Module) -> torch.Tensor:
    size = getattr(model, "input_size", None)
    backbone = getattr(model, "backbone", None)
    info = getattr(backbone, "info", None)
    if size is None or info is None:
        raise InputError(f"pass an example image x to find the default circuit layers of {type(model).__name__}")
    param = next(model.parameters(), None)
    return torch.zeros(1, 3 if info.in_chans == 3 else 1, *size, device=param.device if param is not None else "cpu")


def default_circuit_layers(model: nn.Module, x: torch.Tensor | None = None, count: int = DEFAULT_LAYER_COUNT) -> list[str]:
    """The default circuit layers of ``model``: the last ``count`` convolutions that connect directly
    (see the module docstring), ending at the one that feeds the classifier. ``x`` is an example
    image ``(1, C, H, W)``, needed unless ``model`` is an
    :class:`~sparsex.models.classifier.ImageClassifier`."""
    check_model(model)
    check_int(count, "circuit setting count", 1)
    x = _check_image(x) if x is not None else _example_input(model)
    return _default_layers(model, _trace(model, x), count)


def _check_settings(top_k: Any, threshold: Any, edge_top_k: Any, other_classes: Any) -> None:
    check_int(top_k, "circuit setting top_k", 1)
    check_int(edge_top_k, "circuit setting edge_top_k", 1, none_ok=True)
    check_int(other_classes, "circuit setting other_classes", 0)
    check_number(threshold, "circuit setting threshold (a fraction of the layer's largest activation)", 0, 1,
                 high_open=True)


def _layer_list(layers: str | Sequence[str] | None) -> list[str] | None:
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = layers.split(",")
    if not isinstance(layers, (list, tuple)) or not all(isinstance(name, str) for name in layers):
        raise InputError(f"layers must be a list of layer names (or one comma-separated string), got {layers!r}")
    names = [name.strip() for name in layers if name.strip()]
    if not names:
        raise InputError("layers is empty; name at least one convolution layer, or pass None for the default")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"layer {duplicates[0]!r} is listed twice")
    return names


def _check_target(target: Any, num_classes: int) -> int | None:
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        if target.numel() != 1 or target.is_floating_point() or target.is_complex():
            raise InputError(f"target must be one integer class index, got a tensor of shape {tuple(target.shape)} "
                             f"and dtype {target.dtype}")
        target = int(target.item())
    target = check_int(target, "target (a class index)")
    if not 0 <= target < num_classes:
        raise InputError(f"target class {target} is out of range for a classifier with {num_classes} classes "
                         f"(0 to {num_classes - 1})")
    return target


def _top_edges(edges: list[tuple[str, str, dict[str, Any]]], k: int | None) -> list[tuple[str, str, dict[str, Any]]]:
    edges = [e for e in edges if e[2]["score"] > 0]
    edges.sort(key=lambda e: -e[2]["score"])
    return edges if k is None else edges[:k]


def readout(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None,
            layers: str | Sequence[str] | None = None, top_k: int = DEFAULT_TOP_K, threshold: float = DEFAULT_THRESHOLD,
            edge_top_k: int | None = None, other_classes: int = 0, class_edges: bool = True) -> "nx.DiGraph":
    """The circuit of ``model`` on one image (see the module docstring for the exact definitions).

    ``model`` maps images ``(B, C, H, W)`` to logits ``(B, K)`` (e.g. an
    :class:`~sparsex.models.classifier.ImageClassifier`); ``x`` is one image ``(C, H, W)`` or
    ``(1, C, H, W)``: the image itself or its explanation ``e = m * x + (1 - m) * blur(x)``.
    ``target`` is the class whose edges are read (default: the class ``model`` predicts on ``x``);
    ``layers`` the convolution layers, in forward order (default :func:`default_circuit_layers`);
    ``top_k`` channels are kept per layer among those above ``threshold`` times the layer's largest
    activation; ``edge_top_k`` (None: all) edges are kept between consecutive layers and into each
    class; ``other_classes`` adds the classes with the next highest logits. ``class_edges=False``
    allows a last layer that does not feed the classifier directly (no class nodes then).

    Returns a ``networkx.DiGraph``. Bad input (unknown or unconnected layers, a target out of range,
    an image the model cannot take) raises a one-line :class:`~sparsex.errors.InputError`.
    """
    import networkx as nx

    check_model(model)
    _check_settings(top_k, threshold, edge_top_k, other_classes)
    names = _layer_list(layers)
    if names is not None:
        resolve_layers(model, names)  # unknown names fail before the forward pass
    x = _check_image(x)
    trace = _trace(model, x)
    num_classes = trace.logits.numel()
    target = _check_target(target, num_classes)
    predicted = int(trace.logits.argmax())
    if target is None:
        target = predicted
    modules = dict(model.named_modules())

    if names is None:
        names = _default_layers(model, trace, DEFAULT_LAYER_COUNT)
    convs = [_resolve_conv(model, name) for name in names]
    for name, conv in zip(names, convs):
        if conv not in trace.position:
            raise InputError(f"layer {name!r} did not run in the model's forward pass")
    duplicates = sorted({c for c in convs if convs.count(c) > 1})
    if duplicates:
        raise InputError(f"two layer names stand for the same convolution {duplicates[0]}")
    for (name_a, a), (name_b, b) in zip(zip(names, convs), zip(names[1:], convs[1:])):
        if trace.position[b] < trace.position[a]:
            raise InputError(f"list the layers in forward order: {name_b} runs before {name_a}")
        problem = _connection_problem(model, trace, a, b)
        if problem:
            following = _next_conv(model, trace, a)
            hint = f"the convolution that follows {name_a} is {following}" if following else f"{name_a} is the last convolution"
            raise InputError(f"layers {name_a} and {name_b} are not connected channel to channel: {problem}; "
                             f"list consecutive convolutions ({hint}), e.g. {', '.join(_chain_ending_at(model, trace, b, 3))}")
    points = [_measure_point(model, trace, conv) for conv in convs]
    linear_name = None
    if class_edges:
        linear_name, why = _readout_linear(model, trace, convs[-1], points[-1])
        if linear_name is None:
            feeding = _last_feeding_conv(model, trace)
            hint = f"end the layers with {feeding}" if feeding else "no convolution feeds it directly"
            raise InputError(f"the last layer {names[-1]} does not feed the classifier's linear layer directly ({why}); "
                             f"{hint}, or pass class_edges=False")

    graph = nx.DiGraph()
    kept: list[list[int]] = []
    for depth, (name, point) in enumerate(zip(names, points)):
        act = trace.channels[point]
        peak = float(act.max()) if act.numel() else 0.0
        if peak > 0:
            active = torch.nonzero((act > threshold * peak) & (act > 0)).flatten()
            order = active[torch.argsort(act[active], descending=True, stable=True)][:top_k]
        else:
            order = torch.zeros(0, dtype=torch.long)
        kept.append([int(c) for c in order])
        for c in kept[-1]:
            graph.add_node(f"{name}:{c}", kind="channel", layer=name, depth=depth, channel=c,
                           activation=float(act[c]), relative=float(act[c]) / peak)

    for depth in range(len(names) - 1):
        source, target_layer = names[depth], names[depth + 1]
        mass = kernel_mass(modules[convs[depth + 1]])
        act = trace.channels[points[depth]]
        edges = [(f"{source}:{i}", f"{target_layer}:{o}", {"score": float(mass[o, i] * act[i]), "mass": float(mass[o, i])})
                 for i in kept[depth] for o in kept[depth + 1]]
        graph.add_edges_from(_top_edges(edges, edge_top_k))

    classes: list[int] = []
    if linear_name is not None:
        names_of = class_names(model, num_classes)
        ranked = [int(k) for k in torch.argsort(trace.logits, descending=True, stable=True) if int(k) != target]
        classes = [target] + ranked[:other_classes]
        weight = modules[linear_name].weight.detach().to("cpu", torch.float64)
        features = trace.linear_in[linear_name]
        for k in classes:
            graph.add_node(f"class:{k}", kind="class", layer=linear_name, depth=len(names), channel=k,
                           activation=float(trace.logits[k]), name=names_of[k], target=k == target)
            edges = [(f"{names[-1]}:{c}", f"class:{k}", {"score": float(weight[k, c].abs() * features[c]),
                                                          "weight": float(weight[k, c]),
                                                          "contribution": float(weight[k, c] * features[c])})
                     for c in kept[-1]]
            graph.add_edges_from(_top_edges(edges, edge_top_k))

    names_of = class_names(model, num_classes)
    graph.graph.update({
        "target": target, "target_name": names_of[target], "predicted": predicted, "predicted_name": names_of[predicted],
        "target_logit": float(trace.logits[target]), "num_classes": num_classes,
        "layers": list(names), "convolutions": list(convs), "measured_at": dict(zip(names, points)),
        "readout": linear_name, "classes": classes,
        "settings": {"top_k": int(top_k), "threshold": float(threshold),
                     "edge_top_k": None if edge_top_k is None else int(edge_top_k),
                     "other_classes": int(other_classes), "class_edges": bool(class_edges)},
    })
    return graph


def _plain(value: Any) -> Any:
    """JSON-ready copies of graph attributes (tensors and numpy scalars to Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def circuit_to_json(graph: "nx.DiGraph") -> dict[str, Any]:
    """A plain, JSON-serialisable dict of a :func:`readout` graph: ``target``, ``layers`` and the
    other graph attributes, ``nodes`` (``[{"id", "kind", "layer", "channel", "activation", ...}]``,
    layer by layer, most active first) and ``edges`` (``[{"source", "target", "score", ...}]``,
    highest score first within each layer pair)."""
    nodes = sorted(graph.nodes(data=True), key=lambda n: (n[1].get("depth", 0), -n[1].get("activation", 0.0), n[0]))
    depth = {n: d.get("depth", 0) for n, d in graph.nodes(data=True)}
    edges = sorted(graph.edges(data=True), key=lambda e: (depth[e[0]], -e[2].get("score", 0.0), e[0], e[1]))
    data = _plain(dict(graph.graph))
    data["nodes"] = [{"id": n, **_plain(attrs)} for n, attrs in nodes]
    data["edges"] = [{"source": a, "target": b, **_plain(attrs)} for a, b, attrs in edges]
    return data


def circuit_from_json(data: dict[str, Any]) -> "nx.DiGraph":
    """Rebuild the graph that :func:`circuit_to_json` wrote (e.g. read back from ``circuit.json``)."""
    import networkx as nx

    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not isinstance(data.get("edges"), list):
        raise InputError("a circuit must be a dict with 'nodes' and 'edges' lists (as circuit_to_json writes)")
    graph = nx.DiGraph()
    graph.graph.update({k: v for k, v in data.items() if k not in ("nodes", "edges")})
    try:
        for node in data["nodes"]:
            graph.add_node(node["id"], **{k: v for k, v in node.items() if k != "id"})
        for edge in data["edges"]:
            graph.add_edge(edge["source"], edge["target"], **{k: v for k, v in edge.items() if k not in ("source", "target")})
    except (KeyError, TypeError) as e:
        raise InputError(f"malformed circuit: a node or edge lacks {e}") from None
    return graph


def circuit_file(classifier: str | os.PathLike, image: str | os.PathLike, out: str | os.PathLike,
                 explainer: str | os.PathLike | None = None, target: int | str | None = None,
                 layers: str | Sequence[str] | None = None, top_k: int = DEFAULT_TOP_K,
                 threshold: float = DEFAULT_THRESHOLD, edge_top_k: int | None = None, other_classes: int = 0,
                 overwrite: bool = False, device: str | torch.device = "cpu") -> Path:
    """The circuit of a ``sparsex train classifier`` run on one image file; what ``sparsex circuit`` does.

    The image is read (:func:`~sparsex.data.base.load_image`) and resized (bilinear) to the
    classifier's input size, or to the size the ``explainer`` (a ``sparsex train minimal-mask`` run
    trained for this classifier) was trained on. With an explainer the readout runs on the
    explanation ``e = m * x + (1 - m) * blur(x)``, and ``target`` defaults to the class predicted on
    ``x`` (the mask always explains the predicted class). ``target`` is a class index or name.
    Writes, atomically, ``circuit.json``
    (:func:`circuit_to_json`), ``circuit.png`` (:func:`~sparsex.viz.circuit.circuit_figure`) and
    ``image.png`` (plus ``mask.png`` and ``explanation.png`` with an explainer) into ``out``.
    """
    from ..data.base import read_image_tensor, save_image_png
    from ..io import atomic_dir, check_output_dir, write_json
    from ..models.classifier import load_classifier
    from ..viz.circuit import circuit_figure
    from .minimal_mask import MinimalMask

    check_output_dir(out, overwrite)
    _check_settings(top_k, threshold, edge_top_k, other_classes)
    names = _layer_list(layers)
    model, _ = load_classifier(classifier)
    model = model.to(device)
    if target is not None:
        target = class_index(target, class_names(model, model.num_classes))
    if names is not None:
        resolve_layers(model, names)
    mask_explainer = MinimalMask.load(explainer, model) if explainer is not None else None
    if mask_explainer is not None:
        channels, size = mask_explainer.in_chans, mask_explainer.image_size or model.input_size
    else:
        channels, size = (3 if model.backbone.info.in_chans == 3 else 1), model.input_size
    x = read_image_tensor(image, channels, size).to(device)

    pictures = {"image.png": x[0]}
    extra: dict[str, Any] = {"image": str(image), "classifier": str(classifier), "input": "image"}
    if mask_explainer is not None:
        mask, e = mask_explainer.explain(x)
        with torch.no_grad():
            target = _check_target(target, model.num_classes)
            if target is None:
                target = int(model(x).argmax(dim=1))
        pictures.update({"mask.png": mask[0], "explanation.png": e[0]})
        extra.update({"input": "explanation", "explainer": str(explainer), "mask_area": round(float(mask.mean()), 4)})
        shown = e
    else:
        shown = x
    graph = readout(model, shown, target=target, layers=names, top_k=top_k, threshold=threshold,
                    edge_top_k=edge_top_k, other_classes=other_classes)
    graph.graph.update(extra)

    with atomic_dir(out, overwrite=overwrite) as tmp:
        for filename, picture_tensor in pictures.items():
            save_image_png(picture_tensor, tmp / filename)
        write_json(tmp / "circuit.json", circuit_to_json(graph))
        circuit_figure(graph, tmp / "circuit.png", image=shown[0])
    return Path(out)
