"""Circuit readout (arXiv 2509.25686, "Minimalist Explanation Generation and Circuit Discovery"):
the channels and connections that carry a classifier's decision on one image, read from a single
forward pass of that image, or of its minimal explanation ``e = m * x + (1 - m) * blur(x)``.

:func:`readout` returns a ``networkx.DiGraph`` over a chain of *layers* ``L_1, ..., L_n``, each a
computation whose output channels are nodes:

- a ``Conv2d``;
- a hidden ``nn.Linear`` on pooled channels, ``(B, C) -> (B, C')``: a 1x1 convolution on a 1x1
  map (torchvision MobileNetV3's ``classifier.0``), its output units the channels;
- a **residual addition** ``y = u + v`` of two branches (ResNet's ``x + block(x)``, an inverted
  residual's skip), named by the module whose forward runs it (the block, e.g. ``layer4.1``).

The graph:

- **nodes** are the *active channels* of each layer. The activation of channel ``c`` of layer ``L``
  is the spatial mean of its output, ``a_L[c] = mean_{i,j} y_L[c, i, j]`` (a linear layer's output
  itself), where ``y_L`` is measured **after the per-channel operations that follow the layer and
  that nothing else reads** (BatchNorm, the activation function, Dropout; GroupNorm and
  InstanceNorm), i.e. post-norm, post-activation (small-cnn: each block's ReLU; EfficientNet: after
  ``BatchNormAct2d``; a ResNet block's ``conv2``: after ``bn2``, which the addition reads; the
  block's addition: after the ReLU that follows it). Channel ``c`` is active when
  ``a_L[c] > threshold * max_c' a_L[c']`` and ``a_L[c] > 0``; the ``top_k`` most active channels of
  each layer are kept. With ``share = q`` instead (or as well, ``top_k`` then a cap), a layer keeps
  its fewest highest channels whose scores make up ``q`` of the layer's positive total,
  ``min n: sum_{r <= n} s_L[c_r]^+ >= q sum_c s_L[c]^+`` (channels ``c_r`` by decreasing score ``s_L``:
  activation, or attribution), among the active ones: a size that follows the layer's width and how
  spread its evidence is (the attribution readout's default, ``DEFAULT_SHARE``). With ``sufficient``
  (the attribution readout's default), the selected channels are then cut to the fewest that alone
  keep the label, every other channel of the read layers mean-ablated (:func:`readout`). Node id
  ``"<layer>:<channel>"``; attributes ``kind="channel"``, ``layer``, ``depth`` (the layer's
  position), ``channel``, ``activation`` and ``relative`` (``a / max a``).
- **channel edges** join consecutive layers ``A -> B``: ``score(i -> o) = M[o, i] * a_A[i]`` with
  ``M[o, i] = M_B[o, i] * |S_i|``, where ``M_B`` is ``B``'s own map of ``A``'s channels:

  - ``B`` a ``Conv2d``: the kernel's absolute mass ``M_B[o, i] = sum_{u,v} |W_B[o, i, u, v]|``
    (:func:`kernel_mass`; grouped and depthwise convolutions connect input ``i`` only to the
    outputs of its group, a depthwise one ``i -> i``);
  - ``B`` a linear layer: ``M_B[o, i] = |W_B[o, i]|``;
  - ``B`` an addition: the identity (``i -> i`` only): channel ``i`` of a branch is added to channel
    ``i`` of the sum. The sum's other operand (the shortcut) adds to the same channel and is not an
    edge of this chain, so such an edge shows only where channel ``i`` is among the kept channels of
    both the branch and the sum (often not, at a small ``top_k``, where the shortcut dominates).

  ``S_i`` composes the per-channel factors applied between ``A``'s measured output and ``B``'s
  input: a norm's scale ``gamma_i / sqrt(var_i + eps)`` (BatchNorm: its running variance;
  GroupNorm, InstanceNorm: this image's), a squeeze-excitation gate's value ``g_i`` on this image
  (EfficientNet, MobileNetV3), constant factors. A per-channel affine ``s_i x_i + t_i`` in front of a linear map folds into it, as
  BatchNorm folding does: ``W (s x + t) = (W s) x + W t``, so the factor scales the weight of input
  ``i`` while the shift ``W t`` joins the bias, which does not depend on ``A``'s activation. The
  ops read through are listed per layer in ``graph.graph["between"]``. Attributes ``score`` and
  ``mass`` (``M[o, i]``).
- **class nodes and edges**: the last layer feeds the classifier's linear layer (the ``nn.Linear``
  whose output is the logits, e.g. :class:`~sparsex.models.classifier.LinearProbe`'s):
  ``score(c -> k) = |W[k, c]| * f[c]`` with ``f`` the linear layer's input (the pooled features,
  equal to ``a_{L_n}`` for average pooling; whatever runs between, a BatchNorm included, is in ``f``
  already). Attributes ``score``, ``weight`` (``W[k, c]``) and ``contribution`` (``W[k, c] f[c]``,
  the channel's signed share of the logit). Class node id ``"class:<k>"``; attributes
  ``kind="class"``, ``layer`` (the linear layer's name), ``channel`` (``k``), ``activation`` (the
  logit), ``name``, ``target``. The target class, and optionally the ``other_classes`` classes with
  the next highest logits, get class nodes.

Edges with score 0 are dropped; ``edge_top_k`` keeps the highest-scoring edges between each pair of
consecutive layers and into each class node. The graph's attributes (``graph.graph``) record the
target, the prediction, the layers (``kinds``: ``"conv"``, ``"linear"`` or ``"addition"``;
``modules``: the module each stands for), where each was measured, what runs between and the
settings; :func:`circuit_to_json` turns it into a plain dict, :func:`circuit_from_json` back, and
:func:`sparsex.viz.circuit.circuit_figure` draws it.

**Which layers connect** is read from the data flow of the traced forward pass (every torch
function it calls, with the tensors it reads and writes), not from module names or order: ``A ->
B`` are consecutive when the path from ``A``'s output into ``B`` (into one operand, for an
addition) runs only through operations that keep each channel apart: the per-channel affines
above, activations, dropout, pooling (average or max, global or not), padding, resizing, spatial
means and flatten/reshape that keep the channel axis, and elementwise functions of one map
(``x * sigmoid(x)``). Activations, max pooling and resizing after ``A``'s measured output are taken
as keeping each channel's mean, an approximation; average pooling keeps it exactly. Anything else
stops the path: another layer; a residual addition, which is a layer of its own (the sum is not
one branch's channels, so a chain reaches it as a node and never passes through it); a
concatenation, attention, LayerNorm, a transpose, a product of two different maps, a
squeeze-excitation gate's own branch (the gate scales the channels of the map it multiplies, a
factor of ``S``; the convolutions that compute it lead to no other layer's channels).

**Default layers** (:func:`default_circuit_layers`): ``3`` layers ending at the one that feeds the
classifier, each the layer whose channels the next one reads; at an addition, the residual branch
(the operand computed by more layers inside the block), not the shortcut. small-cnn: its three
convolutions; EfficientNet-Lite0: the last block's depthwise and projection convolutions and the
head convolution; ResNet: ``layer4.1.conv1``, ``layer4.1.conv2`` and the block's addition
``layer4.1``; EfficientNet-B0: ``blocks.6.0.conv_dw``, ``blocks.6.0.conv_pwl`` (through the SE
gate) and ``conv_head``; timm MobileNetV3: the last inverted residual's addition, ``blocks.5.0.conv``
and ``conv_head`` (a 1x1 convolution on the pooled channels); torchvision MobileNetV3: the addition
``features.11``, ``features.12.0`` and ``classifier.0``. A layer name in ``layers`` is a
``Conv2d`` or ``nn.Linear``, a module whose forward runs one residual addition (it stands for the
addition), or a module holding exactly one ``Conv2d`` (a small-cnn block). A model in which no
layer feeds the classifier channel to channel raises one line saying why and which layers could
be read instead; a vision transformer (nothing after its patch embedding is a convolution) is
refused by name.
"""

from __future__ import annotations

import numbers
import weakref
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..checks import check_images, check_int, check_number
from ..errors import InputError, SparsexError
from ..inference import check_model, class_names
from .circuit_sites import DEFAULT_STEPS, ReferenceMeans, channel_attribution, hooked, reference_images, reference_means
from .hooks import find_transformer, resolve_layers

if TYPE_CHECKING:
    import networkx as nx

#: Default settings of :func:`readout`: the paper's readout keeps ``DEFAULT_TOP_K`` channels per layer; the
#: attribution readout keeps ``DEFAULT_SHARE`` of each layer's positive attribution (chosen on held-out images of
#: both benchmark classifiers, benchmarks/README.md "Circuit faithfulness")
DEFAULT_TOP_K = 8
DEFAULT_SHARE = 0.6
DEFAULT_THRESHOLD = 0.1
DEFAULT_LAYER_COUNT = 3
#: how :func:`readout` picks each layer's channels: the paper's (activation) or by attribution
SELECTIONS = ("activation", "attribution")
#: prefixes of the ranked channels that :func:`readout`'s ``sufficient`` cut checks per forward pass
PREFIX_BATCH = 16

#: functions of one map that act on each element alone (activations, dropout, copies, casts)
_ELEMENTWISE = frozenset({
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish", "hardsigmoid",
    "hardtanh", "sigmoid", "tanh", "softplus", "softsign", "logsigmoid", "hardshrink", "softshrink", "tanhshrink",
    "threshold", "prelu", "rrelu", "clamp", "clamp_min", "clamp_max", "clip", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "clone", "contiguous", "detach", "to", "float", "type_as",
    "requires_grad",
})
#: functions that pool, pad, resize or re-lay each channel (when the batch and channel axes stay)
_SPATIAL = frozenset({
    "avg_pool2d", "max_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "max_pool2d_with_indices",
    "adaptive_max_pool2d_with_indices", "fractional_max_pool2d", "pad", "interpolate", "upsample", "upsample_nearest",
    "upsample_bilinear", "flatten", "view", "reshape", "squeeze", "unsqueeze", "view_as", "reshape_as",
})
#: reductions (when they reduce spatial axes only)
_REDUCTIONS = frozenset({"mean", "nanmean", "amax", "amin", "max", "min", "sum"})
_ARITHMETIC = frozenset({"add", "sub", "mul", "div"})
#: other spellings of the arithmetic functions
_ALIASES = {"truediv": "div", "true_divide": "div", "divide": "div", "multiply": "mul", "subtract": "sub"}
_LAYER_KINDS = ("conv", "linear", "addition")


def kernel_mass(layer: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """``M (out, in)``: how strongly input channel ``i`` feeds output channel ``o`` of ``layer``. A
    convolution's ``M[o, i] = sum_{u,v} |W[o, i', u, v]|``: for ``groups > 1`` the weight
    ``(out, in / groups, kh, kw)`` is placed block-diagonally (``i' = i - group(o) * in / groups``;
    0 outside ``o``'s group), so a depthwise convolution gives a diagonal matrix. A linear layer
    (a 1x1 convolution on a 1x1 map): ``M[o, i] = |W[o, i]|``. On the CPU, float64."""
    if isinstance(layer, nn.Linear):
        return layer.weight.detach().abs().to("cpu", torch.float64)
    if not isinstance(layer, nn.Conv2d):
        raise InputError(f"kernel_mass needs an nn.Conv2d or nn.Linear, got {type(layer).__name__}")
    mass = layer.weight.detach().abs().sum(dim=(2, 3)).to("cpu", torch.float64)  # (out, in / groups)
    out_channels, in_per_group = mass.shape
    groups = layer.groups
    dense = torch.zeros(out_channels, in_per_group * groups, dtype=torch.float64)
    group_of = torch.arange(out_channels) // (out_channels // groups)
    columns = group_of[:, None] * in_per_group + torch.arange(in_per_group)[None, :]
    return dense.scatter_(1, columns, mass)


@dataclass(eq=False)
class _Op:
    """One torch function the traced forward pass called and the value it produced (the value's id
    is the op's index in :attr:`_Flow.ops`; value 0 is the image)."""

    name: str  # the function's plain name: "conv2d", "batch_norm", "add" (also for __iadd__, add_), ...
    module: str  # the innermost module running it ("" in the model's own forward)
    inputs: list[int]  # the values among its tensor arguments, in order (weights, buffers, constants are none)
    shape: tuple[int, ...]
    channels: torch.Tensor | None  # image 0's per-channel mean (C,) of a (B, C, h, w) or (B, C) value, float64
    kind: str = "op"  # "input", a layer ("conv", "linear", "addition"), "pair" until classified, or "op"
    follow: int | None = None  # the value whose channels it passes on one to one (None: it does not)
    scale: torch.Tensor | None = None  # the factor it applies to them: per channel (C,) or one number
    absorb: bool = False  # a per-channel norm or elementwise function that a layer's measurement reads through
    layer: nn.Module | None = None  # the Conv2d / Linear of a conv or linear layer
    block: tuple[int, int] = (0, 0)  # an addition: the ops [start, end) of the module call that runs it
    why: str = ""  # what it is, where a message names it

    def __post_init__(self) -> None:
        self.why = f"{self.name} in {self.module}" if self.module else f"{self.name} in the model's forward"


@dataclass
class _Call:
    """A finished module call: its name, the ops ``[start, end)`` it ran and the value it returned."""

    name: str
    start: int
    end: int
    value: int | None


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _function_name(func: Any) -> tuple[str, bool]:
    """``func``'s plain name (``__iadd__``, ``add_`` -> ``add``; ``__truediv__`` -> ``div``) and
    whether its operands are reflected (``__rsub__(x, c)`` is ``c - x``)."""
    name = getattr(func, "__name__", type(func).__name__)
    reflected = False
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("i", "r") and _ALIASES.get(name[1:], name[1:]) in _ARITHMETIC:
            reflected, name = name[0] == "r", name[1:]
    name = name.rstrip("_")
    return _ALIASES.get(name, name), reflected


def _channel_means(t: torch.Tensor) -> torch.Tensor | None:
    """Image 0's per-channel spatial mean ``(C,)`` of ``t (B, C, h, w)``, its row of ``t (B, C)``."""
    if not t.is_floating_point() or t.dim() not in (2, 4) or 0 in t.shape:
        return None
    row = t[0].detach()
    return (row.mean(dim=(1, 2)) if t.dim() == 4 else row).to("cpu", torch.float64)


def _norm_factor(var: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``gamma / sqrt(var + eps)`` per channel, float64 on the CPU."""
    scale = (var.detach().to("cpu", torch.float64) + eps).rsqrt()
    return scale if weight is None else scale * weight.detach().to("cpu", torch.float64)


def _batch_norm_scale(input: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                      weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, training: bool = False,
                      momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """The per-channel factor of a ``F.batch_norm`` call (its signature): the running variance in
    eval mode, this batch's otherwise."""
    use_batch = training or running_var is None
    return _norm_factor(input.transpose(0, 1).flatten(1).var(dim=1, unbiased=False) if use_batch else running_var,
                        weight, eps)


def _instance_norm_scale(input: torch.Tensor, running_mean: torch.Tensor | None = None,
                         running_var: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                         bias: torch.Tensor | None = None, use_input_stats: bool = True, momentum: float = 0.1,
                         eps: float = 1e-5) -> torch.Tensor:
    """The per-channel factor of a ``F.instance_norm`` call on image 0: its own variance per channel."""
    use_image = use_input_stats or running_var is None
    return _norm_factor(input[0].flatten(1).var(dim=1, unbiased=False) if use_image else running_var, weight, eps)


def _group_norm_scale(input: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
                      bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """The per-channel factor of a ``F.group_norm`` call on image 0: its group's variance."""
    var = input[0].reshape(num_groups, -1).var(dim=1, unbiased=False)
    return _norm_factor(var.repeat_interleave(input.shape[1] // num_groups), weight, eps)


#: the norms: a per-channel affine ``s x + t`` whose factor ``s`` each function computes from the call's arguments
_NORMS = {F.batch_norm: _batch_norm_scale, F.instance_norm: _instance_norm_scale, F.group_norm: _group_norm_scale}


def _per_channel(constant: Any, like: torch.Tensor) -> torch.Tensor | None:
    """A constant (number or tensor) as a factor on ``like``'s channels: one number, or ``(C,)``
    when it is the same over the other axes; None when it varies within a channel."""
    c = torch.as_tensor(constant.detach() if isinstance(constant, torch.Tensor) else constant).to("cpu", torch.float64)
    if c.numel() == 1:
        return c.reshape(())
    try:
        per_item = torch.broadcast_to(c, like.shape)[0].reshape(like.shape[1], -1)
    except RuntimeError:
        return None
    return per_item[:, 0].clone() if bool((per_item == per_item[:, :1]).all()) else None


def _reduced_axes(args: tuple, kwargs: dict, ndim: int) -> set[int] | None:
    dim = kwargs.get("dim", args[1] if len(args) > 1 and not isinstance(args[1], torch.Tensor) else None)
    if dim is None or isinstance(dim, bool):
        return None
    return {int(d) % ndim for d in ((dim,) if isinstance(dim, int) else dim)}


class _Flow:
    """The data flow of one forward pass of one image (:func:`_trace`): every torch function it
    called, outermost calls only (what runs inside one is not seen), as :class:`_Op` values; the
    module calls; the logits. Layers are conv, linear and addition ops; a module name stands for a
    layer only where the module ran exactly one."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.modules = dict(model.named_modules())
        self.ops = [_Op("input", "", [], tuple(x.shape), _channel_means(x), kind="input")]
        self.calls: list[_Call] = []
        self._value_of = {id(x): 0}  # id of a live tensor -> the value it holds now (in-place ops make a new one)
        self._stack: list[tuple[str, int]] = []

    # -- recording (during the forward pass) --

    def enter(self, name: str, _module: nn.Module, _inputs: tuple) -> None:
        self._stack.append((name, len(self.ops)))

    def leave(self, name: str, _module: nn.Module, _inputs: tuple, output: Any) -> None:
        _, start = self._stack.pop()
        self.calls.append(_Call(name, start, len(self.ops), self._value_of.get(id(output))))

    def record(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        given = list(_tensors((args, kwargs)))
        inputs = [self._value_of[id(t)] for t in given if id(t) in self._value_of]
        result = next(_tensors(out), None)
        if result is None or not inputs:  # a size or a flag, or computed from weights and constants only
            return
        name, reflected = _function_name(func)
        op = _Op(name, self._stack[-1][0] if self._stack else "", inputs, tuple(result.shape), _channel_means(result))
        self._classify(op, func, args, kwargs, next(t for t in given if id(t) in self._value_of), result, reflected)
        self._value_of[id(result)] = len(self.ops)
        weakref.finalize(result, self._value_of.pop, id(result), None)  # a freed tensor's id may be reused
        self.ops.append(op)

    def _classify(self, op: _Op, func: Any, args: tuple, kwargs: dict, data: torch.Tensor, result: torch.Tensor,
                  reflected: bool) -> None:
        """Set what ``op`` does to the channels of ``data``, its first argument computed from the image."""
        module = self.modules.get(op.module)
        single = len(op.inputs) == 1
        axes_kept = data.dim() >= 2 and result.dim() >= 2 and data.shape[:2] == result.shape[:2]
        if op.name == "conv2d" and isinstance(module, nn.Conv2d) and single:
            op.kind, op.layer = "conv", module
        elif op.name == "linear" and isinstance(module, nn.Linear) and single:
            if data.dim() == 2:
                op.kind, op.layer = "linear", module
            else:
                op.why = f"linear in {op.module} on {tuple(data.shape)} (tokens or positions, not (B, C) channels)"
        elif not single:
            if op.name in _ARITHMETIC and len(op.inputs) == 2:
                op.kind = "pair"  # classified once the whole flow is known (_classify_pair)
        elif op.name in _ELEMENTWISE and result.shape == data.shape:
            op.follow, op.absorb = op.inputs[0], True
        elif func in _NORMS and result.shape == data.shape:
            op.follow, op.absorb, op.scale = op.inputs[0], True, _NORMS[func](*args, **kwargs)
        elif op.name in _SPATIAL and axes_kept:
            op.follow = op.inputs[0]
        elif op.name in _REDUCTIONS and axes_kept:
            axes = _reduced_axes(args, kwargs, data.dim())
            if axes and min(axes) >= 2:
                op.follow = op.inputs[0]
                if op.name == "sum":
                    op.scale = torch.tensor(data.numel() / result.numel(), dtype=torch.float64)
        elif op.name in _ARITHMETIC and result.shape == data.shape:
            first = args[0] is data and not reflected
            operands = [*args[:2], *(kwargs[key] for key in ("other",) if key in kwargs)]
            constant = next((a for a in operands if a is not data), None)
            if op.name == "add" or (op.name == "sub" and first):
                op.follow = op.inputs[0]
            elif op.name == "sub":
                op.follow, op.scale = op.inputs[0], torch.tensor(-1.0, dtype=torch.float64)
            elif constant is not None and (op.name == "mul" or first):
                factor = _per_channel(constant, data)
                if factor is not None:
                    op.follow, op.scale = op.inputs[0], factor if op.name == "mul" else 1 / factor

    # -- reading (after the forward pass) --

    def finish(self, output: torch.Tensor) -> None:
        """Classify the binary ops, keep the layers a module name can stand for, find the consumers
        of every value among the ops the logits depend on (not checks, not a forward hook's own
        reading of a tensor) and the classifier (the ``nn.Linear`` whose output is ``output``)."""
        for op in self.ops:
            if op.kind == "pair":
                self._classify_pair(op)
        for index, op in enumerate(self.ops):
            if op.kind == "addition" and op.module:
                call = next(c for c in self.calls if c.name == op.module and c.start <= index < c.end)
                op.block = (call.start, call.end)
        runs = Counter(op.module for op in self.ops if op.kind in _LAYER_KINDS)
        for op in self.ops:
            if op.kind in _LAYER_KINDS and (runs[op.module] > 1 or not op.module):
                op.kind = "op"
                op.why = (f"{op.name} in {op.module}, one of the {runs[op.module]} layer ops that module runs (a name "
                          f"stands for one)" if op.module else f"{op.name} in the model's own forward (no module runs it)")
        self.layers = {op.module: index for index, op in enumerate(self.ops) if op.kind in _LAYER_KINDS}
        value = self._value_of.get(id(output))
        live, todo = set(), [] if value is None else [value]
        while todo:
            if (v := todo.pop()) not in live:
                live.add(v)
                todo.extend(self.ops[v].inputs)
        self.consumers: list[list[int]] = [[] for _ in self.ops]
        for index in sorted(live):
            for v in dict.fromkeys(self.ops[index].inputs):
                self.consumers[v].append(index)
        self.readout = value if value is not None and self.ops[value].kind == "linear" else None
        if value is None:
            self.no_readout = "the logits are not computed from the image"
        elif self.readout is None:
            self.no_readout = f"the logits come from {self.ops[value].why}, not from an nn.Linear"

    def _classify_pair(self, op: _Op) -> None:
        """An add/sub/mul/div of two values: one map's elementwise function (both come from the same
        value through channel-preserving ops: ``x * sigmoid(x)``, avg + max pooling), a residual
        addition (a layer), a per-channel gate (``x * g`` or ``x / g`` with ``g (B, C, 1, ...)``,
        one factor per channel of this image, squeeze-excitation's; where both have one value per
        channel, ``g`` is the one computed from ``x``), or neither."""
        a, b = op.inputs
        op.kind = "op"
        if self._root(a) == self._root(b):
            op.follow = a
            return
        if op.name in ("add", "sub"):
            if self.ops[a].shape == self.ops[b].shape == op.shape and op.channels is not None:
                op.kind = "addition"
            return
        sizes = [torch.Size(self.ops[v].shape).numel() for v in (a, b)]
        if sizes[0] != sizes[1]:
            main, gate = (a, b) if sizes[0] > sizes[1] else (b, a)
        elif self._descends(b, a) or self._descends(a, b):
            main, gate = (a, b) if self._descends(b, a) else (b, a)
        else:
            return
        main_shape, gate_shape = self.ops[main].shape, self.ops[gate].shape
        per_channel = (len(gate_shape) >= 2 and gate_shape[:2] == main_shape[:2]
                       and torch.Size(gate_shape[2:]).numel() == 1 and self.ops[gate].channels is not None)
        if per_channel and (op.name == "mul" or gate == b):
            values = self.ops[gate].channels
            op.follow, op.scale = main, values if op.name == "mul" else 1 / values
            where = op.module or "the model's forward"
            op.why = f"{op.name} by a per-channel gate in {where}"

    def _root(self, value: int) -> int:
        while self.ops[value].follow is not None:
            value = self.ops[value].follow
        return value

    def _descends(self, value: int, ancestor: int) -> bool:
        """Whether ``value`` is computed from ``ancestor``."""
        todo, seen = [value], set()
        while todo:
            v = todo.pop()
            if v == ancestor:
                return True
            if v > ancestor and v not in seen:
                seen.add(v)
                todo.extend(self.ops[v].inputs)
        return False

    def name(self, layer: int) -> str:
        return self.ops[layer].module

    def measured(self, layer: int) -> int:
        """The value a layer's activations are read from: its output, then each per-channel norm or
        elementwise function that is the only op reading the value before."""
        value = layer
        while len(self.consumers[value]) == 1 and self.ops[self.consumers[value][0]].absorb:
            value = self.consumers[value][0]
        return value

    def measured_at(self, layer: int) -> str:
        """The module whose output is the measured value (the last to return it among those that
        started after the layer ran), or the layer itself."""
        value = self.measured(layer)
        names = [call.name for call in self.calls if call.value == value and call.start > layer]
        return names[-1] if names else self.name(layer)

    def walk(self, value: int) -> tuple[int | None, list[int], str]:
        """From ``value`` back to the layer whose channels it carries: ``(layer, ops, "")`` with the
        ops in between in forward order, or ``(None, ops, why)`` where the path stops."""
        path: list[int] = []
        while self.ops[value].kind not in _LAYER_KINDS:
            op = self.ops[value]
            if op.kind == "input" or op.follow is None:
                return None, path[::-1], "the model's input" if op.kind == "input" else op.why
            path.append(value)
            value = op.follow
        return value, path[::-1], ""

    def sources(self, layer: int) -> list[tuple[int | None, list[int], str]]:
        """:meth:`walk` from each input of ``layer`` (both operands of an addition)."""
        op = self.ops[layer]
        return [self.walk(value) for value in (op.inputs if op.kind == "addition" else op.inputs[:1])]

    def feeding(self) -> tuple[int | None, list[int], str]:
        """:meth:`walk` from the classifier's input: the layer that feeds it, or why none does."""
        if self.readout is None:
            return None, [], self.no_readout
        source, path, why = self.walk(self.ops[self.readout].inputs[0])
        return source, path, why and f"the path into {self.name(self.readout)} stops at {why}"

    def previous(self, layer: int) -> int | None:
        """The layer whose channels ``layer`` reads; at an addition the residual branch, the operand
        that comes from more layers inside the block (not the shortcut; the first on a tie)."""
        found = [source for source, _, _ in self.sources(layer) if source is not None]
        if not found:
            return None
        start, end = self.ops[layer].block
        return max(found, key=lambda source: self._depth_inside(source, start, end))

    def _depth_inside(self, layer: int | None, start: int, end: int) -> int:
        depth = 0
        while layer is not None and start <= layer < end:
            depth, layer = depth + 1, self.previous(layer)
        return depth

    def chain(self, last: int, count: int) -> list[int]:
        """Up to ``count`` layers ending at ``last``, each the :meth:`previous` of the next."""
        chain = [last]
        while len(chain) < count and (before := self.previous(chain[0])) is not None:
            chain.insert(0, before)
        return chain

    def readers(self, layer: int) -> list[str]:
        """The layers that read ``layer``'s channels."""
        return [name for name, index in self.layers.items()
                if index != self.readout and any(source == layer for source, _, _ in self.sources(index))]

    def reads(self, layer: int) -> str:
        """What ``layer`` reads, for messages: the layers, or where each input's path stops."""
        parts = [f"the channels of {self.name(source)}" if source is not None else f"a path that stops at {why}"
                 for source, _, why in self.sources(layer)]
        return " and ".join(parts)

    def readable(self) -> list[str]:
        """The last chain of at least two layers that connect (the layers to suggest for a model
        whose classifier no layer feeds), or []."""
        for index in sorted(self.layers.values(), reverse=True):
            chain = self.chain(index, DEFAULT_LAYER_COUNT) if index != self.readout else []
            if len(chain) > 1:
                return [self.name(layer) for layer in chain]
        return []


class _Recorder(TorchFunctionMode):
    """While active, hands every torch function call (the outermost ones: the mode is off inside
    its own handler) with its result to :meth:`_Flow.record`."""

    def __init__(self, flow: _Flow) -> None:
        super().__init__()
        self.flow = flow

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.flow.record(func, args, kwargs, out)
        return out


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


def _trace(model: nn.Module, x: torch.Tensor) -> _Flow:
    """Run ``model`` on ``x (1, C, H, W)`` once (eval mode, no gradients) and record its data flow."""
    flow = _Flow(model, x)
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(partial(flow.enter, name)))
            handles.append(module.register_forward_hook(partial(flow.leave, name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Recorder(flow):
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
    flow.logits = output[0].detach().to("cpu", torch.float64)
    flow.finish(output)
    return flow


def _describe(model: nn.Module) -> str:
    """The model's class, with the timm architecture inside it where there is one."""
    cfgs = (getattr(m, "pretrained_cfg", None) for m in model.modules())
    arch = next((cfg["architecture"] for cfg in cfgs if isinstance(cfg, dict) and cfg.get("architecture")), None)
    return f"{type(model).__name__} ({arch})" if arch else type(model).__name__


def _unreadable(model: nn.Module, flow: _Flow, why: str) -> InputError:
    """The one-line error for a model whose classifier no layer feeds channel to channel."""
    transformer = find_transformer(model)
    if transformer is not None:
        return InputError(f"{_describe(model)} is a vision transformer: after its patch embedding {transformer.embed} "
                          f"no convolution runs and attention mixes the tokens, so no layer feeds the classifier "
                          f"channel to channel ({why}); no layers can be read instead (explain it with gradcam)")
    instead = flow.readable()
    hint = (f"layers that do connect: {', '.join(instead)} (pass them as layers with class_edges=False)" if instead
            else "no two of its layers connect channel to channel")
    return InputError(f"{_describe(model)} cannot be read as a circuit: no layer feeds its classifier channel to "
                      f"channel ({why}); {hint}")


def _default_layers(model: nn.Module, flow: _Flow, count: int) -> list[int]:
    source, _, why = flow.feeding()
    if source is None:
        raise _unreadable(model, flow, why)
    return flow.chain(source, count)


def _example_input(model: nn.Module) -> torch.Tensor:
    size = getattr(model, "input_size", None)
    backbone = getattr(model, "backbone", None)
    info = getattr(backbone, "info", None)
    if size is None or info is None:
        raise InputError(f"pass an example image x to find the default circuit layers of {type(model).__name__}")
    param = next(model.parameters(), None)
    return torch.zeros(1, 3 if info.in_chans == 3 else 1, *size, device=param.device if param is not None else "cpu")


def default_circuit_layers(model: nn.Module, x: torch.Tensor | None = None, count: int = DEFAULT_LAYER_COUNT) -> list[str]:
    """The default circuit layers of ``model``: ``count`` layers ending at the one that feeds the
    classifier, each the layer whose channels the next reads (see the module docstring). ``x`` is
    an example image ``(1, C, H, W)``, needed unless ``model`` is an
    :class:`~sparsex.models.classifier.ImageClassifier`. A model that no layer feeds the
    classifier of (a vision transformer) raises a one-line :class:`~sparsex.errors.InputError`."""
    check_model(model)
    check_int(count, "circuit setting count", 1)
    x = _check_image(x) if x is not None else _example_input(model)
    flow = _trace(model, x)
    return [flow.name(layer) for layer in _default_layers(model, flow, count)]


def _resolve(flow: _Flow, name: str) -> int:
    """The layer a name stands for: a Conv2d or Linear, a module running one addition, or a module
    holding exactly one Conv2d."""
    if name in flow.layers:
        if flow.layers[name] == flow.readout:
            raise InputError(f"layer {name} computes the logits: it is the classifier that the class nodes read; "
                             f"list the layers before it")
        return flow.layers[name]
    module = flow.modules[name]
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        ran = next((op for op in flow.ops if op.module == name and op.name in ("conv2d", "linear")), None)
        raise InputError(f"layer {name!r} cannot be a circuit layer: {ran.why}" if ran else
                         f"layer {name!r} did not run in the model's forward pass")
    inner = [f"{name}.{sub}" for sub, m in module.named_modules() if sub and isinstance(m, nn.Conv2d)]
    if len(inner) == 1:
        return _resolve(flow, inner[0])
    hint = f"its convolutions: {', '.join(inner[:4])}{', ...' if len(inner) > 4 else ''}" if inner else "it holds no Conv2d"
    raise InputError(f"circuit layer {name!r} is a {type(module).__name__}, not a Conv2d (or a module holding exactly "
                     f"one), a Linear, or a block that runs one residual addition; {hint}")


def _check_settings(top_k: Any, threshold: Any, edge_top_k: Any, other_classes: Any, share: Any = None) -> None:
    check_int(top_k, "circuit setting top_k", 1, none_ok=True)
    check_number(share, "circuit setting share (a fraction of each layer's positive score)", 0, 1, low_open=True,
                 none_ok=True)
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


def _chosen_layers(model: nn.Module, flow: _Flow, names: list[str] | None) -> tuple[list[str], list[int], list[list[int]]]:
    """The layer names, their layers and, per consecutive pair, the ops between the first's
    output and the second; a one-line error where two are not connected channel to channel."""
    if names is None:
        layers = _default_layers(model, flow, DEFAULT_LAYER_COUNT)
        names = [flow.name(layer) for layer in layers]
    else:
        layers = [_resolve(flow, name) for name in names]
    duplicates = sorted({flow.name(layer) for layer in layers if layers.count(layer) > 1})
    if duplicates:
        raise InputError(f"two layer names stand for the same layer {duplicates[0]}")
    paths = []
    for (name_a, a), (name_b, b) in zip(zip(names, layers), zip(names[1:], layers[1:])):
        if b < a:
            raise InputError(f"list the layers in forward order: {name_b} runs before {name_a}")
        path = next((path for source, path, _ in flow.sources(b) if source == a), None)
        if path is None:
            readers = flow.readers(a)
            hint = f"{name_a} is read by {', '.join(readers)}" if readers else f"no layer reads {name_a}"
            example = ", ".join(flow.name(layer) for layer in flow.chain(b, DEFAULT_LAYER_COUNT))
            raise InputError(f"layers {name_a} and {name_b} are not connected channel to channel: {name_b} reads "
                             f"{flow.reads(b)}; list consecutive layers ({hint}), e.g. {example}")
        paths.append(path)
    return names, layers, paths


def readout(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None,
            layers: str | Sequence[str] | None = None, top_k: int | None = None, threshold: float = DEFAULT_THRESHOLD,
            edge_top_k: int | None = None, other_classes: int = 0, class_edges: bool = True,
            selection: str = "activation", reference: "torch.Tensor | ReferenceMeans | None" = None,
            steps: int = DEFAULT_STEPS, share: float | None = None, sufficient: bool | None = None) -> "nx.DiGraph":
    """The circuit of ``model`` on one image (see the module docstring for the exact definitions).

    ``model`` maps images ``(B, C, H, W)`` to logits ``(B, K)`` (e.g. an
    :class:`~sparsex.models.classifier.ImageClassifier`, a timm or torchvision CNN); ``x`` is one
    image ``(C, H, W)`` or ``(1, C, H, W)``: the image itself or its explanation
    ``e = m * x + (1 - m) * blur(x)``. ``target`` is the class whose edges are read (default: the
    class ``model`` predicts on ``x``); ``layers`` the layers, in forward order (default
    :func:`default_circuit_layers`); ``top_k`` channels are kept per layer among those above
    ``threshold`` times the layer's largest activation, or with ``share`` the fewest whose scores make
    up that fraction of the layer's positive total (both given: ``top_k`` caps it; neither: the
    paper's ``top_k = 8``, and ``share = 0.6`` for ``selection="attribution"``); ``edge_top_k``
    (None: all) edges are kept between consecutive layers and into each class; ``other_classes``
    adds the classes with the next highest logits. ``class_edges=False`` allows a last layer that
    does not feed the classifier directly (no class nodes then).

    ``selection="attribution"`` picks each layer's channels by their attribution ``A_L`` to the
    target logit instead of their activation (:mod:`~sparsex.explainers.circuit_sites`: integrated
    gradients in ``steps`` steps from the mean activations of ``reference`` images, by default the
    image's blurred copy; or :class:`~sparsex.explainers.circuit_sites.ReferenceMeans` taken once for
    many readouts): the ``top_k`` highest among those above ``threshold`` times the layer's
    largest attribution, and positive. Every node then also carries its ``attribution``. The
    paper's readout is ``"activation"``; the attribution's circuits carry more of the decision
    (``benchmarks/circuit_faithfulness.py``).

    ``sufficient=True`` (the default with ``selection="attribution"``; None: that default) keeps,
    of the channels selected above, the fewest that alone keep the label: ranked (attribution: by
    ``A_L`` over all read layers together, one scale, the logit's; activation: by rank within its
    layer, the layers in turn, since activations of different layers are on no common scale), the
    shortest prefix whose channels alone, every other channel of the read layers mean-ablated to
    ``reference``'s mean as :func:`~sparsex.explainers.circuit_faithfulness.circuit_faithfulness`
    does, keep ``argmax = target`` (checked ``PREFIX_BATCH`` prefixes per forward pass).
    ``graph.graph["sufficient"]`` says whether one does (None when not checked); where none does,
    every selected channel stays. ``graph.graph["selected"]`` counts the channels selected before
    this cut. A verified readout, as the mask explainer's (:func:`~sparsex.explainers.minimal_mask.verified_mask`):
    the smaller circuit is the one whose necessity stands out from random channels' (docs/methods.md).

    Returns a ``networkx.DiGraph``. Bad input (unknown or unconnected layers, a target out of range,
    an image the model cannot take, a model no layer of which feeds the classifier channel to
    channel, such as a vision transformer) raises a one-line :class:`~sparsex.errors.InputError`.
    """
    import networkx as nx

    check_model(model)
    _check_settings(top_k, threshold, edge_top_k, other_classes, share)
    if selection not in SELECTIONS:
        raise InputError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    top_k, share = _default_size(selection, top_k, share)
    sufficient = default_sufficient(selection, sufficient)
    names = _layer_list(layers)
    if names is not None:
        resolve_layers(model, names)  # unknown names fail before the forward pass
    x = _check_image(x)
    flow = _trace(model, x)
    num_classes = flow.logits.numel()
    target = _check_target(target, num_classes)
    predicted = int(flow.logits.argmax())
    if target is None:
        target = predicted
    names, chosen, paths = _chosen_layers(model, flow, names)
    measured = [flow.measured(layer) for layer in chosen]
    if class_edges:
        source, to_classifier, why = flow.feeding()
        if source != chosen[-1]:
            hint = f"end the layers with {flow.name(source)}" if source is not None else "no layer feeds it channel to channel"
            reason = f"it reads the channels of {flow.name(source)}" if source is not None else why
            raise InputError(f"the last layer {names[-1]} does not feed the classifier's linear layer directly ({reason}); "
                             f"{hint}, or pass class_edges=False")
        paths.append(to_classifier)
    between = [[op for op in path if op > value] for path, value in zip(paths, measured)]
    measured_at = {name: flow.measured_at(layer) for name, layer in zip(names, chosen)}
    attribution, means = None, None
    if selection == "attribution" or sufficient:  # the reference means once: the attribution's start, the cut's ablation
        means = reference_images(x, reference)
        if isinstance(means, ReferenceMeans):
            means.check(measured_at)
        else:
            means = reference_means(model, means, names, measured_at)
    if selection == "attribution":
        attribution = channel_attribution(model, x, torch.tensor([target]), names, measured_at, means, steps)

    graph = nx.DiGraph()
    scores = [flow.ops[value].channels if attribution is None else attribution[name][0] for name, value in zip(names, measured)]
    kept = [_keep(score, threshold, top_k, share) for score in scores]
    selected, is_sufficient = sum(map(len, kept)), None
    if sufficient:
        kept, is_sufficient = _sufficient_channels(model, x, target, names, measured_at, kept,
                                                   scores if attribution is not None else None, means)
    for depth, (name, value) in enumerate(zip(names, measured)):
        act, score = flow.ops[value].channels, scores[depth]
        act_peak = float(act.max()) if act.numel() else 0.0
        for c in kept[depth]:
            graph.add_node(f"{name}:{c}", kind="channel", layer=name, depth=depth, channel=c, activation=float(act[c]),
                           relative=float(act[c]) / act_peak if act_peak > 0 else 0.0,
                           **({} if attribution is None else {"attribution": float(score[c])}))

    for depth in range(len(names) - 1):
        act = flow.ops[measured[depth]].channels
        factor = torch.ones_like(act)
        for op in between[depth]:
            if flow.ops[op].scale is not None:
                factor = factor * flow.ops[op].scale
        nxt = flow.ops[chosen[depth + 1]]
        if nxt.kind == "addition":  # channel i of the branch adds to channel i of the sum only
            mass, pairs = torch.diag(factor.abs()), [(i, i) for i in kept[depth] if i in kept[depth + 1]]
        else:
            mass, pairs = kernel_mass(nxt.layer) * factor.abs()[None, :], [(i, o) for i in kept[depth] for o in kept[depth + 1]]
        edges = [(f"{names[depth]}:{i}", f"{names[depth + 1]}:{o}", {"score": float(mass[o, i] * act[i]), "mass": float(mass[o, i])})
                 for i, o in pairs]
        graph.add_edges_from(_top_edges(edges, edge_top_k))

    classes: list[int] = []
    linear_name = flow.name(flow.readout) if class_edges else None
    names_of = class_names(model, num_classes)
    if class_edges:
        ranked = [int(k) for k in torch.argsort(flow.logits, descending=True, stable=True) if int(k) != target]
        classes = [target] + ranked[:other_classes]
        linear = flow.ops[flow.readout]
        weight = linear.layer.weight.detach().to("cpu", torch.float64)
        features = flow.ops[linear.inputs[0]].channels
        for k in classes:
            graph.add_node(f"class:{k}", kind="class", layer=linear_name, depth=len(names), channel=k,
                           activation=float(flow.logits[k]), name=names_of[k], target=k == target)
            edges = [(f"{names[-1]}:{c}", f"class:{k}", {"score": float(weight[k, c].abs() * features[c]),
                                                          "weight": float(weight[k, c]),
                                                          "contribution": float(weight[k, c] * features[c])})
                     for c in kept[-1]]
            graph.add_edges_from(_top_edges(edges, edge_top_k))

    graph.graph.update({
        "target": target, "target_name": names_of[target], "predicted": predicted, "predicted_name": names_of[predicted],
        "target_logit": float(flow.logits[target]), "num_classes": num_classes,
        "layers": list(names), "kinds": [flow.ops[layer].kind for layer in chosen],
        "modules": [flow.name(layer) for layer in chosen],
        "measured_at": measured_at,
        "between": {name: [flow.ops[op].why for op in ops]
                    for name, ops in zip(names[1:] + ([linear_name] if class_edges else []), between)},
        "readout": linear_name, "classes": classes, "selected": selected, "sufficient": is_sufficient,
        "settings": {"top_k": None if top_k is None else int(top_k), "share": None if share is None else float(share),
                     "threshold": float(threshold), "selection": selection,
                     **({"steps": int(steps)} if attribution is not None else {}), "sufficient": sufficient,
                     "edge_top_k": None if edge_top_k is None else int(edge_top_k),
                     "other_classes": int(other_classes), "class_edges": bool(class_edges)},
    })
    return graph


def _sufficient_channels(model: nn.Module, x: torch.Tensor, target: int, names: list[str], measured_at: dict[str, str],
                        kept: list[list[int]], scores: list[torch.Tensor] | None,
                        means: ReferenceMeans) -> tuple[list[list[int]], bool]:
    """:func:`readout`'s ``sufficient`` cut: of the ``kept`` channels (per layer, best first) the shortest prefix of
    their ranking (by ``scores`` over all layers together, or with None by rank within the layer, the layers in turn)
    that alone keeps ``argmax = target`` on ``x``, every other channel of the read layers replaced by its reference
    mean; and whether one does (if not: ``kept`` as it is)."""
    ranked = [(depth, c) for depth, channels in enumerate(kept) for c in channels]
    if scores is not None:
        ranked.sort(key=lambda item: -float(scores[item[0]][item[1]]))
    else:
        ranked.sort(key=lambda item: kept[item[0]].index(item[1]))  # stable: the layers in turn within a rank
    widths = [int(means.means[name].shape[0]) for name in names]
    with hooked(model, names, measured_at) as sites:
        for start in range(1, len(ranked) + 1, PREFIX_BATCH):
            sizes = list(range(start, min(len(ranked), start + PREFIX_BATCH - 1) + 1))
            keep = [torch.zeros(len(sizes), width, dtype=torch.bool) for width in widths]
            for row, size in enumerate(sizes):
                for depth, c in ranked[:size]:
                    keep[depth][row, c] = True
            plan = {name: (keep[depth], means.means[name]) for depth, name in enumerate(names)}
            logits = sites.run(model, x.expand(len(sizes), *x.shape[1:]), plan)
            hits = (logits.argmax(dim=1) == target).nonzero()
            if len(hits):
                chosen = set(ranked[:sizes[int(hits[0])]])
                return [[c for c in channels if (depth, c) in chosen] for depth, channels in enumerate(kept)], True
    return kept, False


def default_sufficient(selection: str, sufficient: bool | None) -> bool:
    """Whether a readout with ``selection`` makes the ``sufficient`` cut: as given, or with None the selection's
    default (on for ``"attribution"``, off for the paper's ``"activation"``)."""
    if sufficient is None:
        return selection == "attribution"
    if not isinstance(sufficient, bool):
        raise InputError(f"sufficient must be True or False, got {sufficient!r}")
    return sufficient


def _default_size(selection: str, top_k: int | None, share: float | None) -> tuple[int | None, float | None]:
    """``(top_k, share)`` of a readout: as given, or with neither given the selection's default (the
    paper's ``DEFAULT_TOP_K`` for ``"activation"``, ``DEFAULT_SHARE`` for ``"attribution"``)."""
    if top_k is None and share is None:
        return (None, DEFAULT_SHARE) if selection == "attribution" else (DEFAULT_TOP_K, None)
    return top_k, share


def _keep(score: torch.Tensor, threshold: float, top_k: int | None, share: float | None) -> list[int]:
    """The channels a layer keeps by its scores ``(C,)`` (module docstring): the active ones (above
    ``threshold`` times the peak, and positive) by decreasing score, the first ``top_k`` of them
    and/or the fewest whose scores make up ``share`` of the positive total."""
    peak = float(score.max()) if score.numel() else 0.0
    if peak <= 0:
        return []
    order = torch.argsort(score, descending=True, stable=True)
    if share is not None:
        positive = score[order].clamp(min=0).double()
        order = order[:int((positive.cumsum(0) < share * positive.sum()).sum()) + 1]
    order = order[(score[order] > threshold * peak) & (score[order] > 0)]
    return [int(c) for c in order[:top_k]]


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
