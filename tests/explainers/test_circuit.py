"""The circuit readout on hand-built models whose activations and edge scores are computed by hand."""

import json

import networkx as nx
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from sparsex.errors import InputError, SparsexError
from sparsex.explainers.circuit import (
    circuit_from_json,
    circuit_to_json,
    default_circuit_layers,
    kernel_mass,
    readout,
)
from sparsex.viz.circuit import circuit_figure


class Tiny(nn.Module):
    """conv1 (1x1, 1 -> 3) -> ReLU -> conv2 (3x3, 3 -> 2, no padding) -> ReLU -> GAP -> fc (2 -> 2).

    On a 3x3 image of 0.5 everywhere: conv1 + ReLU gives [0.5, 1.0, 0] (channel 2 is -0.5 before
    the ReLU); conv2 gives one pixel, out[o] = sum_i a[i] * sum(W2[o, i]): [9, 3.5]; the logits are
    [9 - 3.5, 0.5 * 9 + 2 * 3.5 + 0.1] = [5.5, 11.6].
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 2, 3, bias=False)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([1.0, 2.0, -1.0]).view(3, 1, 1, 1))
            w2 = torch.zeros(2, 3, 3, 3)
            w2[0, 0] = 2.0                                   # sum 18, mass 18
            w2[0, 1, 1, 1], w2[0, 1, 0, 0] = 1.0, -1.0       # sum 0, mass 2
            w2[0, 2] = 5.0                                   # channel 2 is inactive
            w2[1, 0, 2, 2] = -2.0                            # sum -2, mass 2
            w2[1, 1] = 0.5                                   # sum 4.5, mass 4.5
            self.conv2.weight.copy_(w2)
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 0.1]))

    def forward(self, x):
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(h).flatten(1))


X = torch.full((1, 1, 3, 3), 0.5)


def edges(graph):
    return {(a, b): d["score"] for a, b, d in graph.edges(data=True)}


def test_hand_computed_nodes_and_edges():
    g = readout(Tiny(), X)
    assert isinstance(g, nx.DiGraph)
    assert g.graph["layers"] == ["conv1", "conv2"] and g.graph["readout"] == "fc"
    assert g.graph["measured_at"] == {"conv1": "relu1", "conv2": "relu2"}  # post-activation
    assert g.graph["target"] == g.graph["predicted"] == 1
    assert g.graph["target_logit"] == pytest.approx(11.6)
    acts = {n: d["activation"] for n, d in g.nodes(data=True)}
    assert acts == pytest.approx({"conv1:0": 0.5, "conv1:1": 1.0, "conv2:0": 9.0, "conv2:1": 3.5, "class:1": 11.6})
    assert g.nodes["conv1:0"]["relative"] == pytest.approx(0.5) and g.nodes["class:1"]["target"] is True
    assert edges(g) == pytest.approx({
        ("conv1:0", "conv2:0"): 18 * 0.5, ("conv1:1", "conv2:0"): 2 * 1.0,
        ("conv1:0", "conv2:1"): 2 * 0.5, ("conv1:1", "conv2:1"): 4.5 * 1.0,
        ("conv2:0", "class:1"): 0.5 * 9, ("conv2:1", "class:1"): 2 * 3.5,
    })
    assert g.edges["conv1:0", "conv2:0"]["mass"] == pytest.approx(18)
    # other target: |W| for the score, the signed share of the logit as contribution
    g0 = readout(Tiny(), X, target=0)
    assert edges(g0)[("conv2:1", "class:0")] == pytest.approx(3.5)
    assert g0.edges["conv2:1", "class:0"]["contribution"] == pytest.approx(-3.5)
    assert sum(d["contribution"] for _, _, d in g0.in_edges("class:0", data=True)) == pytest.approx(5.5)
    assert g0.graph["target"] == 0 and g0.graph["predicted"] == 1


def test_top_k_threshold_and_edge_pruning():
    g = readout(Tiny(), X, top_k=1)
    assert set(g.nodes) == {"conv1:1", "conv2:0", "class:1"}
    assert edges(g) == pytest.approx({("conv1:1", "conv2:0"): 2.0, ("conv2:0", "class:1"): 4.5})
    g = readout(Tiny(), X, threshold=0.6)  # conv1:0 (0.5 of the max) drops out; conv2:1 is 3.5 / 9 = 0.39 of its max
    assert set(g.nodes) == {"conv1:1", "conv2:0", "class:1"}
    g = readout(Tiny(), X, edge_top_k=1, other_classes=1)
    assert edges(g) == pytest.approx({("conv1:0", "conv2:0"): 9.0, ("conv2:1", "class:1"): 7.0, ("conv2:0", "class:0"): 9.0})
    assert g.nodes["class:0"]["target"] is False and g.graph["classes"] == [1, 0]


def test_share_keeps_the_fewest_channels_making_up_that_fraction():
    # conv1 activations [0.5, 1.0, 0] (positive total 1.5), conv2 [9, 3.5] (12.5)
    def kept(graph):
        return sorted(n for n, d in graph.nodes(data=True) if d["kind"] == "channel")

    g = readout(Tiny(), X, share=0.6)  # 0.9 of 1.5: conv1:1 alone (1.0); 7.5 of 12.5: conv2:0 alone (9)
    assert kept(g) == ["conv1:1", "conv2:0"]
    assert g.graph["settings"]["share"] == 0.6 and g.graph["settings"]["top_k"] is None
    g = readout(Tiny(), X, share=0.9)  # 1.35: needs 1.0 + 0.5; 11.25: needs 9 + 3.5
    assert kept(g) == ["conv1:0", "conv1:1", "conv2:0", "conv2:1"]
    assert kept(readout(Tiny(), X, share=0.9, top_k=1)) == ["conv1:1", "conv2:0"]  # top_k caps the share
    assert kept(readout(Tiny(), X, share=0.9, threshold=0.6)) == ["conv1:1", "conv2:0"]  # among the active ones
    # neither given: the paper's top_k for the activation readout
    settings = readout(Tiny(), X).graph["settings"]
    assert settings["top_k"] == 8 and settings["share"] is None
    for bad in (0, 1.5, float("nan")):
        with pytest.raises(InputError, match="share"):
            readout(Tiny(), X, share=bad)


def test_depthwise_and_grouped_kernel_mass():
    torch.manual_seed(0)
    depthwise = nn.Conv2d(4, 4, 3, groups=4)
    mass = kernel_mass(depthwise)
    assert torch.equal(mass, torch.diag(depthwise.weight.detach().abs().sum((1, 2, 3)).double()))
    grouped = nn.Conv2d(4, 6, 3, groups=2)  # inputs 0-1 -> outputs 0-2, inputs 2-3 -> outputs 3-5
    dense = torch.zeros(6, 4, 3, 3)
    dense[:3, :2], dense[3:, 2:] = grouped.weight.detach()[:3], grouped.weight.detach()[3:]
    assert torch.allclose(kernel_mass(grouped), dense.abs().sum((2, 3)).double())

    model = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.ReLU(), nn.Conv2d(3, 3, 3, groups=3, bias=False), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1))
        model[2].weight.copy_(torch.arange(1.0, 28.0).view(3, 1, 3, 3) / 27)
    g = readout(model, X, layers=["0", "2"], threshold=0.0)
    assert g.graph["measured_at"] == {"0": "1", "2": "3"}
    w = model[2].weight.detach().abs().sum((1, 2, 3))
    expected = {(f"0:{i}", f"2:{i}"): float(w[i]) * 0.5 * (i + 1) for i in range(3)}
    assert {k: v for k, v in edges(g).items() if k[0].startswith("0:")} == pytest.approx(expected)  # i -> i only


def test_layer_names_blocks_and_default_layers():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()), nn.MaxPool2d(2),
                          nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert default_circuit_layers(model, x) == ["0.0", "2.0"]
    g = readout(model, x, layers="0,2")  # a block with exactly one convolution stands for it
    assert g.graph["modules"] == ["0.0", "2.0"] and g.graph["kinds"] == ["conv", "conv"] and g.graph["measured_at"] == {"0": "0.2", "2": "2.2"}
    assert all(d["activation"] > 0 for _, d in g.nodes(data=True) if d["kind"] == "channel")
    assert model.training is False and len(model[0][0]._forward_hooks) == 0  # hooks removed


def test_bad_input_is_one_line_sparsex_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    x = torch.rand(1, 1, 8, 8)
    cases = [
        (dict(layers=["0", "nope"]), r"no layer 'nope'.*convolution layers are: 0, 2, 4"),
        (dict(layers=["0", "4"]), r"not connected channel to channel: 4 reads the channels of 2; .*0 is read by 2.*e\.g\. 0, 2, 4"),
        (dict(layers=["4", "8"]), r"layer 8 computes the logits"),
        (dict(layers=["2", "0"]), r"forward order"),
        (dict(layers=["0", "0"]), r"listed twice"),
        (dict(layers=["1"]), r"'1' is a ReLU, not a Conv2d"),
        (dict(layers=["0", "2"]), r"does not feed the classifier.*end the layers with 4"),
        (dict(target=3), r"target class 3 is out of range.*3 classes"),
        (dict(target=-1), r"out of range"),
        (dict(target=1.5), r"target \(a class index\) must be an integer"),
        (dict(top_k=0), r"top_k must be a positive integer"),
        (dict(threshold=1.0), r"threshold \(a fraction of the layer's largest activation\) must be a finite number in \[0, 1\)"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(InputError, match=pattern) as info:
            readout(model, x, **kwargs)
        assert "\n" not in str(info.value)
    assert readout(model, x, layers=["0", "2"], class_edges=False).graph["readout"] is None
    for bad, pattern in [(torch.rand(2, 1, 8, 8), "one image at a time"), (torch.rand(1, 1, 3, 3), "cannot run on an image"),
                         (torch.rand(1, 3, 8, 8), "cannot run on an image"), (torch.full((1, 1, 8, 8), float("nan")), "NaN"),
                         ([[0.0]], "torch.Tensor")]:
        with pytest.raises(SparsexError, match=pattern) as info:
            readout(model, bad)
        assert "\n" not in str(info.value)


def test_json_round_trip_and_figure(tmp_path):
    g = readout(Tiny(), X, other_classes=1)
    data = json.loads(json.dumps(circuit_to_json(g)))
    assert data["target"] == 1 and data["layers"] == ["conv1", "conv2"]
    assert [n["id"] for n in data["nodes"]] == ["conv1:1", "conv1:0", "conv2:0", "conv2:1", "class:1", "class:0"]
    assert {"layer", "channel", "activation"} <= set(data["nodes"][0]) and data["edges"][0]["score"] == pytest.approx(9.0)
    back = circuit_from_json(data)
    assert set(back.edges) == set(g.edges) and back.graph["target"] == 1
    assert back.nodes["conv2:1"]["activation"] == pytest.approx(3.5)
    path = circuit_figure(g, tmp_path / "circuit.png", image=X[0])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = readout(Tiny(), torch.zeros(1, 1, 3, 3), class_edges=False)  # nothing active
    assert empty.number_of_nodes() == 0
    circuit_figure(empty, tmp_path / "empty.png")
    with pytest.raises(InputError, match="'nodes' and 'edges'"):
        circuit_from_json({"nodes": 3})


class Folded(nn.Module):
    """conv1 (1x1, 1 -> 3) -> ReLU -> max pool 2 -> BatchNorm -> ReLU -> conv2 (1x1, 3 -> 2) -> ReLU -> GAP -> fc.

    On the 2x2 image [[1, 0], [0, 0]]: conv1 + ReLU gives channel means a = [0.25, 0, 0.5] (channel 1
    is -x, all zero after the ReLU: inactive); the max pool gives [1, 0, 2]; the BatchNorm (running
    mean 0, variance [4, 1, 0.25], eps 0, weight [2, 1, -1], bias [0.5, 0.5, 5]) scales the channels
    by S = [1, 1, -2] and gives [1.5, 0.5, 1], all positive; conv2 gives [1.5 + 2.5 + 1, 3 + 3] = [5, 6].
    Folding S into conv2's weights: mass[o, i] = |W2[o, i]| |S_i| = [[1, 5, 2], [2, 0, 6]]. The logits
    are [5 - 6, 2.5 + 12] = [-1, 14.5].
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(3, eps=0.0)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 2, 1, bias=False)
        self.relu3 = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2, bias=False))
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([1.0, -1.0, 2.0]).view(3, 1, 1, 1))
            self.bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
            self.bn.weight.copy_(torch.tensor([2.0, 1.0, -1.0]))
            self.bn.bias.copy_(torch.tensor([0.5, 0.5, 5.0]))
            self.conv2.weight.copy_(torch.tensor([[1.0, 5.0, 1.0], [2.0, 0.0, 3.0]]).view(2, 3, 1, 1))
            self.head[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))

    def forward(self, x):
        return self.head(self.relu3(self.conv2(self.relu2(self.bn(self.pool(self.relu1(self.conv1(x))))))))


def test_batchnorm_relu_pooling_path_is_folded_into_the_edges():
    g = readout(Folded().eval(), torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2), other_classes=1)
    assert g.graph["layers"] == ["conv1", "conv2"] and g.graph["readout"] == "head.2"
    assert g.graph["measured_at"] == {"conv1": "relu1", "conv2": "relu3"}
    assert g.graph["between"]["conv2"] == ["max_pool2d in pool", "batch_norm in bn", "relu in relu2"]
    acts = {n: d["activation"] for n, d in g.nodes(data=True)}
    assert acts == pytest.approx({"conv1:0": 0.25, "conv1:2": 0.5, "conv2:0": 5.0, "conv2:1": 6.0,
                                  "class:1": 14.5, "class:0": -1.0})
    masses = {(a, b): d["mass"] for a, b, d in g.edges(data=True) if b.startswith("conv2")}
    assert masses == pytest.approx({("conv1:0", "conv2:0"): 1.0, ("conv1:2", "conv2:0"): 2.0,
                                    ("conv1:0", "conv2:1"): 2.0, ("conv1:2", "conv2:1"): 6.0})
    assert edges(g) == pytest.approx({
        ("conv1:0", "conv2:0"): 0.25, ("conv1:2", "conv2:0"): 1.0, ("conv1:0", "conv2:1"): 0.5, ("conv1:2", "conv2:1"): 3.0,
        ("conv2:0", "class:1"): 2.5, ("conv2:1", "class:1"): 12.0, ("conv2:0", "class:0"): 5.0, ("conv2:1", "class:0"): 6.0,
    })
    assert sum(d["contribution"] for _, _, d in g.in_edges("class:1", data=True)) == pytest.approx(14.5)


def test_group_norm_between_layers_is_folded_with_this_images_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.AvgPool2d(2), nn.GroupNorm(2, 4),
                          nn.Conv2d(4, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].bias.fill_(1.0)
        model[5].bias.fill_(3.0)  # every channel active
        model[4].weight.copy_(torch.tensor([0.5, -2.0, 1.0, 3.0]))
    seen = {}
    model[4].register_forward_pre_hook(lambda m, i: seen.update(x=i[0][0].detach().double()))
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    g = readout(model, x, threshold=0.0)
    assert g.graph["layers"] == ["0", "5"] and g.graph["measured_at"] == {"0": "2", "5": "6"}
    assert g.graph["between"]["5"] == ["avg_pool2d in 3", "group_norm in 4"]
    var = seen["x"].reshape(2, -1).var(dim=1, unbiased=False).repeat_interleave(2)  # each group's variance
    factor = model[4].weight.detach().double().abs() / (var + model[4].eps).sqrt()
    mass = kernel_mass(model[5])
    pairs = [(g.nodes[a]["channel"], g.nodes[b]["channel"], d["mass"]) for a, b, d in g.edges(data=True) if b.startswith("5:")]
    assert len(pairs) == 12 and all(m == pytest.approx(float(mass[o, i] * factor[i])) for i, o, m in pairs)


class Gated(nn.Module):
    """conv1 -> x * sigmoid(x) (a functional swish) -> squeeze-excitation x * gate(x) -> conv2 -> ReLU ->
    (avg + max pooling) / 2 -> fc. conv2 reads conv1's channels, each scaled by its gate value."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.se = nn.ModuleDict({"reduce": nn.Conv2d(4, 2, 1), "expand": nn.Conv2d(2, 4, 1), "gate": nn.Sigmoid()})
        self.conv2 = nn.Conv2d(4, 5, 1)
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():
            self.conv1.bias.add_(0.5)  # every channel active

    def forward(self, x):
        h = self.conv1(x)
        h = h * torch.sigmoid(h)
        h = h * self.se["gate"](self.se["expand"](torch.relu(self.se["reduce"](h.mean((2, 3), keepdim=True)))))
        h = torch.relu(self.conv2(h))
        return self.fc(((F.adaptive_avg_pool2d(h, 1) + F.adaptive_max_pool2d(h, 1)) / 2).flatten(1))


def test_a_gate_is_a_factor_and_one_maps_functions_keep_channels():
    model = Gated().eval()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    seen = {}
    model.se["gate"].register_forward_hook(lambda m, i, o: seen.update(gate=o.detach().flatten().double()))
    model.fc.register_forward_pre_hook(lambda m, i: seen.update(f=i[0][0].detach().double()))
    model.conv1.register_forward_hook(lambda m, i, o: seen.update(conv1=o[0].detach().mean((1, 2)).double()))
    assert default_circuit_layers(model, x) == ["conv1", "conv2"]  # not the gate's own convolutions
    g = readout(model, x, top_k=4, threshold=0.0)
    assert g.graph["measured_at"] == {"conv1": "conv1", "conv2": "conv2"}  # each output is read twice: not read through
    conv1 = {d["channel"]: d["activation"] for d in g.nodes.values() if d["layer"] == "conv1"}
    assert len(conv1) == 4 and conv1 == pytest.approx({c: float(seen["conv1"][c]) for c in conv1})
    assert g.graph["between"]["conv2"] == ["mul in the model's forward", "mul by a per-channel gate in the model's forward"]
    mass = kernel_mass(model.conv2)
    channel_edges = [(g.nodes[a]["channel"], g.nodes[b]["channel"], d) for a, b, d in g.edges(data=True) if b.startswith("conv2")]
    assert channel_edges
    for i, o, d in channel_edges:
        assert d["mass"] == pytest.approx(float(mass[o, i] * seen["gate"][i]))
    for a, b, d in g.in_edges(f"class:{g.graph['target']}", data=True):  # max pooling: f is not the mean, read as is
        assert d["contribution"] == pytest.approx(d["weight"] * float(seen["f"][g.nodes[a]["channel"]]))


def random_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with random BatchNorm statistics and affines (random-weight models start
    with the identity, and timm's ResNet with zero last-BN weights), so every layer has active channels."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


ARCHITECTURES = {
    "timm-resnet18": (lambda: timm.create_model("resnet18", num_classes=5),
                      ["layer4.1.conv1", "layer4.1.conv2", "layer4.1"], ["conv", "conv", "addition"]),
    "torchvision-resnet18": (lambda: torchvision.models.resnet18(weights=None, num_classes=5),
                             ["layer4.1.conv1", "layer4.1.conv2", "layer4.1"], ["conv", "conv", "addition"]),
    "timm-efficientnet_b0": (lambda: timm.create_model("efficientnet_b0", num_classes=5),
                             ["blocks.6.0.conv_dw", "blocks.6.0.conv_pwl", "conv_head"], ["conv", "conv", "conv"]),
    "timm-mobilenetv3_small_100": (lambda: timm.create_model("mobilenetv3_small_100", num_classes=5),
                                   ["blocks.4.2", "blocks.5.0.conv", "conv_head"], ["addition", "conv", "conv"]),
    "torchvision-mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None, num_classes=5),
                                       ["features.11", "features.12.0", "classifier.0"], ["addition", "conv", "linear"]),
}
IMAGE = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_cnn_architectures(arch):
    make, layers, kinds = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model = random_norms(make())
    modules = dict(model.named_modules())
    linear = next(name for name, m in modules.items() if isinstance(m, nn.Linear) and m.out_features == 5)
    seen = {}
    modules[linear].register_forward_pre_hook(lambda m, i: seen.update(f=i[0][0].detach().double()))
    assert default_circuit_layers(model, IMAGE) == layers
    g = readout(model, IMAGE, other_classes=1)
    assert g.graph["layers"] == layers and g.graph["kinds"] == kinds and g.graph["readout"] == linear
    assert model.training is False and all(not m._forward_hooks for n, m in modules.items() if n != linear)
    for depth, name in enumerate(layers):
        assert any(d["layer"] == name for _, d in g.nodes(data=True)), name
        if depth and kinds[depth] != "addition":  # (a sum's edges join channel i to i: top-k sets may not meet)
            assert any(g.nodes[a]["layer"] == layers[depth - 1] for a, b in g.edges if g.nodes[b]["layer"] == name), name
    factors = {}
    for a, b, d in g.edges(data=True):
        source, target = g.nodes[a], g.nodes[b]
        if target["kind"] == "class":  # the last layer's activation is what the classifier reads (average pooling)
            assert source["activation"] == pytest.approx(float(seen["f"][source["channel"]]), rel=1e-5)
            assert d["contribution"] == pytest.approx(d["weight"] * source["activation"], rel=1e-5)
        elif g.graph["kinds"][target["depth"]] == "addition":  # a branch adds to the same channel of the sum
            assert source["channel"] == target["channel"] and d["mass"] == pytest.approx(1.0)
        else:  # the layer's own weights, times one factor per input channel (1 without a BatchNorm or gate between)
            mass = kernel_mass(modules[g.graph["modules"][target["depth"]]])
            factor = d["mass"] / float(mass[target["channel"], source["channel"]])
            assert factors.setdefault(a, factor) == pytest.approx(factor)
            if not any("batch_norm" in op or "gate" in op for op in g.graph["between"][target["layer"]]):
                assert factor == pytest.approx(1.0)


def test_resnet_reads_a_block_and_its_sum():
    torch.manual_seed(0)
    model = random_norms(torchvision.models.resnet18(weights=None, num_classes=5))
    seen = {}
    model.layer4[1].register_forward_hook(lambda m, i, o: seen.update(block=o[0].mean((1, 2)).double()))
    g = readout(model, IMAGE)
    assert g.graph["measured_at"] == {"layer4.1.conv1": "layer4.1.relu", "layer4.1.conv2": "layer4.1.bn2",
                                      "layer4.1": "layer4.1.relu"}
    for node, d in g.nodes(data=True):  # the sum's channels: the block's output, after its ReLU
        if d["layer"] == "layer4.1":
            assert d["activation"] == pytest.approx(float(seen["block"][d["channel"]]), rel=1e-5)
    g = readout(model, IMAGE, layers=["layer4.1.conv2", "layer4.1"], top_k=512, threshold=0.0)  # every active channel
    branch = [(g.nodes[a], g.nodes[b], d) for a, b, d in g.edges(data=True) if g.nodes[b]["layer"] == "layer4.1"]
    both = {d["channel"] for d in g.nodes.values() if d["layer"] == "layer4.1"} & {
        d["channel"] for d in g.nodes.values() if d["layer"] == "layer4.1.conv2"}
    assert both and {a["channel"] for a, b, d in branch} == both
    assert all(a["channel"] == b["channel"] and d["score"] == pytest.approx(a["activation"]) for a, b, d in branch)
    # a circuit never passes through an addition; a block name stands for its addition
    with pytest.raises(InputError, match=r"layers layer4.0.conv2 and layer4.1.conv1 are not connected channel to "
                                         r"channel: layer4.1.conv1 reads the channels of layer4.0; .*layer4.0.conv2 is "
                                         r"read by layer4.0\b") as info:
        readout(model, IMAGE, layers=["layer4.0.conv2", "layer4.1.conv1"], class_edges=False)
    assert "\n" not in str(info.value)
    g = readout(model, IMAGE, layers=["layer4.0.conv2", "layer4.0", "layer4.1.conv1"], class_edges=False)
    assert g.graph["kinds"] == ["conv", "addition", "conv"]
    with pytest.raises(InputError, match=r"'layer4' is a Sequential, not a Conv2d .*its convolutions: layer4.0.conv1"):
        readout(model, IMAGE, layers=["layer4"])


def test_efficientnet_gate_scales_the_edges_through_it():
    torch.manual_seed(0)
    model = random_norms(timm.create_model("efficientnet_b0", num_classes=5))
    block = model.blocks[6][0]
    seen = {}
    block.se.gate.register_forward_hook(lambda m, i, o: seen.update(gate=o.detach().flatten().double()))
    g = readout(model, IMAGE, threshold=0.0)
    assert g.graph["between"]["blocks.6.0.conv_pwl"] == ["mul by a per-channel gate in blocks.6.0.se"]
    mass = kernel_mass(block.conv_pwl)
    gated = [(g.nodes[a]["channel"], g.nodes[b]["channel"], d["mass"]) for a, b, d in g.edges(data=True)
             if g.nodes[b]["layer"] == "blocks.6.0.conv_pwl"]
    assert len(gated) == 64
    assert all(m == pytest.approx(float(mass[o, i] * seen["gate"][i])) for i, o, m in gated)


def test_lite0_and_small_cnn_classifiers_keep_their_layers():
    from sparsex.backbones import create_backbone
    from sparsex.models.base import create_model
    from sparsex.models.classifier import ImageClassifier

    for name, size, layers, measured in [
        ("lite0", 64, ["blocks.6.0.conv_dw", "blocks.6.0.conv_pwl", "conv_head"], ["blocks.6.0.se", "blocks.6.0.bn3", "bn2"]),
        ("small-cnn", 28, ["features.0.0", "features.2.0", "features.4.0"], ["features.0.2", "features.2.2", "features.4.2"]),
    ]:
        backbone = create_backbone(name, pretrained=False, image_size=size)
        model = random_norms(ImageClassifier(backbone, create_model("linear-probe", in_channels=backbone.info.channels,
                                                                    num_classes=3)))
        layers, measured = [f"backbone.model.{n}" for n in layers], [f"backbone.model.{n}" for n in measured]
        assert default_circuit_layers(model) == layers
        g = readout(model, torch.rand(1, backbone.info.in_chans, size, size, generator=torch.Generator().manual_seed(0)))
        assert g.graph["measured_at"] == dict(zip(layers, measured)) and g.graph["readout"] == "head.linear"


class Concat(nn.Module):
    """conv_a -> (conv_b, conv_c) -> concatenation -> mean -> fc: the classifier reads a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.conv_b, self.conv_c = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        a = torch.relu(self.conv_a(x))
        return self.fc(torch.cat([torch.relu(self.conv_b(a)), torch.relu(self.conv_c(a))], dim=1).mean((2, 3)))


def test_unreadable_models_say_why_in_one_line():
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, patch_size=8, depth=2, embed_dim=32,
                            num_heads=2)
    tv_vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                                  mlp_dim=32, num_classes=3)
    x = torch.rand(1, 3, 32, 32)
    cases = [
        (vit, {}, (r"^VisionTransformer \(vit_tiny_patch16_224\) is a vision transformer: after its patch embedding "
                   r"patch_embed.proj no convolution runs .*\(the path into head stops at getitem in the model's "
                   r"forward\); no layers can be read instead")),
        (vit, {"class_edges": False}, r"is a vision transformer: .*no layers can be read instead"),
        (tv_vit, {}, r"^VisionTransformer is a vision transformer: after its patch embedding conv_proj no convolution"),
        (Concat(), {}, (r"^Concat cannot be read as a circuit: no layer feeds its classifier channel to channel \(the "
                        r"path into fc stops at cat in the model's forward\); layers that do connect: conv_a, conv_c "
                        r"\(pass them as layers with class_edges=False\)$")),
    ]
    for model, kwargs, pattern in cases:
        image = x if model is not cases[-1][0] else torch.rand(1, 1, 8, 8)
        with pytest.raises(InputError, match=pattern) as info:
            readout(model, image, **kwargs)
        assert "\n" not in str(info.value)
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert readout(Concat(), torch.rand(1, 1, 8, 8), layers="conv_a,conv_c", class_edges=False).graph["layers"] == [
        "conv_a", "conv_c"]
