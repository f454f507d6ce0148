"""The circuit readout on hand-built models whose activations and edge scores are computed by hand."""

import json

import networkx as nx
import pytest
import torch
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
    assert g.graph["convolutions"] == ["0.0", "2.0"] and g.graph["measured_at"] == {"0": "0.2", "2": "2.2"}
    assert all(d["activation"] > 0 for _, d in g.nodes(data=True) if d["kind"] == "channel")
    assert model.training is False and len(model[0][0]._forward_hooks) == 0  # hooks removed


def test_bad_input_is_one_line_sparsex_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    x = torch.rand(1, 1, 8, 8)
    cases = [
        (dict(layers=["0", "nope"]), r"no layer 'nope'.*convolution layers are: 0, 2, 4"),
        (dict(layers=["0", "4"]), r"not connected channel to channel.*\(2\).*follows 0 is 2"),
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
