"""Circuit faithfulness by ablation on hand-built networks whose circuit is known by construction."""

import math

import pytest
import torch
from torch import nn

from sparsex.errors import InputError
from sparsex.explainers.circuit import DEFAULT_SHARE, circuit_to_json, readout
from sparsex.explainers.circuit_faithfulness import (
    circuit_channels,
    circuit_faithfulness,
    faithfulness_curve,
    part_overlap,
)

WIDTH = 32


class Planted(nn.Module):
    """Two 1x1 convolutions (32 -> 32 -> 32, each + ReLU), GAP, fc (32 -> 3). By construction only
    channels {0, 2} of both layers carry class 0's logit: conv1 is the identity, conv2 the identity
    plus channel 0 <- channel 2, and ``logit_0 = b_0 + b_2`` (b: conv2's pooled channels); the other
    channels feed classes 1 (odd channels) and 2 (channels 4, 6) only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(WIDTH, WIDTH, 1, bias=False), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(WIDTH, WIDTH, 1, bias=False), nn.ReLU()
        self.fc = nn.Linear(WIDTH, 3, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.eye(WIDTH)[:, :, None, None])
            w2 = torch.eye(WIDTH)
            w2[0, 2] = 1.0
            self.conv2.weight.copy_(w2[:, :, None, None])
            fc = torch.zeros(3, WIDTH)
            fc[0, [0, 2]] = 1.0
            fc[1, 1::2] = 0.5
            fc[2, [4, 6]] = 0.5
            self.fc.weight.copy_(fc)

    def forward(self, x):
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def planted_images(n: int, seed: int = 0, planted: bool = True) -> torch.Tensor:
    """Weak noise in [0, 0.3) on every channel; ``planted``: channels 0 and 2 strong (+1.0, +0.8)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, WIDTH, 4, 4, generator=g)
    if planted:
        x[:, 0] += 1.0
        x[:, 2] += 0.8
    return x


def test_readout_finds_the_planted_circuit_and_ablation_confirms_it():
    model, x = Planted(), planted_images(6)
    graphs = [readout(model, x[i], top_k=2) for i in range(len(x))]
    for graph in graphs:
        channels, measured_at, target = circuit_channels(graph)
        assert target == 0 and {layer: sorted(c) for layer, c in channels.items()} == {"conv1": [0, 2], "conv2": [0, 2]}
        assert measured_at == {"conv1": "relu1", "conv2": "relu2"}
    zero = circuit_faithfulness(model, x, graphs, ablation="zero")
    # the circuit alone carries all of class 0's logit; without it nothing is left
    assert zero["sufficiency"]["logit"] == pytest.approx(1.0) and zero["sufficiency"]["label"] == 1.0
    assert zero["necessity"]["drop"] == pytest.approx(1.0) and zero["necessity"]["label_lost"] == 1.0
    assert zero["random"]["drop"] < zero["necessity"]["drop"] / 3 and zero["necessity_over_random"] > 3
    assert zero["activation"]["same"] == 1.0 and zero["activation"]["drop"] == pytest.approx(1.0)
    assert zero["circuit_channels"] == {"conv1": 2.0, "conv2": 2.0} and zero["layer_channels"] == {"conv1": 32, "conv2": 32}
    assert zero["random"]["draws"] == 20 and zero["reference_images"] == 0 and zero["positive_logit_images"] == 6
    # mean ablation over a reference set of class-0 and other images: still sufficient, necessity far above random
    reference = torch.cat([planted_images(8, seed=1), planted_images(24, seed=2, planted=False)])
    mean = circuit_faithfulness(model, x, graphs, reference=reference)
    assert mean["sufficiency"]["label"] == 1.0 and mean["reference_images"] == 32
    assert mean["necessity"]["drop"] > 3 * mean["random"]["drop"] > 0
    # over class-0 images alone the circuit channels' mean is what they carry anyway: mean ablation removes little
    alike = circuit_faithfulness(model, x, graphs, reference=planted_images(16, seed=1))
    assert abs(alike["necessity"]["drop"]) < 0.05
    # the same random draws for the same seed, other draws for another
    again = circuit_faithfulness(model, x, graphs, reference=reference)
    other = circuit_faithfulness(model, x, graphs, reference=reference, seed=5)
    assert again["random"] == mean["random"] and other["random"]["drop"] != mean["random"]["drop"]
    # a wrong circuit (the noise channels) is neither sufficient nor necessary
    wrong = circuit_to_json(graphs[0])
    wrong["nodes"] = [{**n, "channel": n["channel"] + 1} if n["kind"] == "channel" else n for n in wrong["nodes"]]
    bad = circuit_faithfulness(model, x, wrong, ablation="zero")
    assert bad["sufficiency"]["logit"] == pytest.approx(0.0) and bad["necessity"]["drop"] == pytest.approx(0.0)


class OneLayer(nn.Module):
    """conv (1x1, 1 -> 3, weights [1, 2, -1]) -> ReLU -> GAP -> fc [[1, 1, 0], [0, -1, 3]]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv2d(1, 3, 1, bias=False), nn.ReLU()
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0, -1.0]).view(3, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, -1.0, 3.0]]))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_hand_computed_one_layer_case():
    """x = [[1, 3], [1, 3]]: channels (means) [2, 4, 0], logits [6, -4]; top_k 1 keeps channel 1.
    Reference images 0.5 and 1.5 everywhere: channel means [1, 2, 0].
    Mean ablation: keep channel 1 -> logit 1 + 4 = 5 (5/6); ablate it -> 2 + 2 = 4 (drop 1/3);
    random single channels: channel 0 -> 1/6, channel 1 -> 1/3, channel 2 -> 0 (mean 1/6).
    Zero ablation: keep -> 4 (4/6); ablate -> 2 (drop 4/6)."""
    model = OneLayer()
    x = torch.tensor([[1.0, 3.0], [1.0, 3.0]]).view(1, 1, 2, 2)
    graph = readout(model, x, top_k=1)
    assert circuit_channels(graph)[0] == {"conv": [1]} and graph.graph["target"] == 0
    reference = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 1.5)])
    mean = circuit_faithfulness(model, x, graph, reference=reference, random_draws=600, single=True)
    assert mean["clean"]["logit"] == pytest.approx(6.0)
    assert mean["sufficiency"]["logit"] == pytest.approx(5 / 6) and mean["sufficiency"]["label"] == 1.0
    p = 1 / (1 + math.exp(-4 - 5))
    assert mean["sufficiency"]["probability"] == pytest.approx(p)
    assert mean["necessity"]["drop"] == pytest.approx(1 / 3) and mean["necessity"]["label_lost"] == 0.0
    assert mean["random"]["drop"] == pytest.approx(1 / 6, abs=0.02)
    assert mean["activation"] == pytest.approx({"drop": 1 / 3, "same": 1.0})
    assert mean["single_drops"] == [pytest.approx({"conv:1": 1 / 3})]
    assert mean["per_image"][0]["sufficiency_logit"] == pytest.approx(5 / 6)
    zero = circuit_faithfulness(model, x, graph, ablation="zero")
    assert zero["sufficiency"]["logit"] == pytest.approx(4 / 6) and zero["necessity"]["drop"] == pytest.approx(4 / 6)
    # default reference: blur(x) (x is constant down each column: blurred, columns 1 and 3 mix; means stay [2, 4, 0])
    default = circuit_faithfulness(model, x, graph)
    assert default["reference_images"] == 1 and default["necessity"]["drop"] == pytest.approx(0.0, abs=1e-6)


def test_curve_over_the_circuit_size():
    model, x = Planted(), planted_images(4)
    curve = faithfulness_curve(model, x, ks=[4, 1, 2, 32], ablation="zero", threshold=0.0)
    assert [p["k"] for p in curve["points"]] == [1, 2, 4, 32]
    fractions = [p["fraction"] for p in curve["points"]]
    assert fractions == pytest.approx([1 / 32, 2 / 32, 4 / 32, 1.0])
    by_k = {p["k"]: p for p in curve["points"]}
    assert by_k[2]["sufficiency_logit"] == pytest.approx(1.0) and by_k[2]["necessity_drop"] == pytest.approx(1.0)
    assert by_k[1]["sufficiency_label"] == 1.0 and by_k[1]["sufficiency_logit"] < 1.0
    assert curve["empty"]["sufficiency_logit"] == pytest.approx(0.0) and curve["full"]["necessity_drop"] == pytest.approx(1.0)
    # sufficiency 0 at x = 0, y at 1/32, 1 from 2/32 on: area (1/32) * y / 2 + (1/32) * (y + 1) / 2 + 30/32
    y = by_k[1]["sufficiency_logit"]
    assert curve["auc"]["sufficiency_logit"] == pytest.approx(y / 64 + (y + 1) / 64 + 30 / 32)
    assert curve["auc"]["necessity_drop"] > curve["auc"]["random_drop"] and 0 <= curve["auc"]["random_drop"] <= 1
    default = faithfulness_curve(model, x[:1], ablation="zero", random_draws=2)
    assert [p["k"] for p in default["points"]] == [1, 2, 4, 8, 16, 32]  # DEFAULT_KS up to the widest layer


def test_part_overlap_hand_computed():
    """The channel's map is the image itself (1 left, 3 right): 3 * 8 of its mass 32 lies on the right half."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[4].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.ones(1, 1, 4, 4)
    x[..., 2:] = 3.0
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 1, :, 2:] = True  # the second part covers the right half
    result = part_overlap(model, x, masks, readout(model, x, top_k=1))
    assert result["pairs"] == 1 and result["inside"] == pytest.approx(0.75) and result["share"] == pytest.approx(0.5)
    assert result["ratio"] == pytest.approx(1.5) and result["above_chance"] == 1.0 and result["per_layer"] == {"0": 0.75}


def test_bad_input_is_one_line_error():
    model, x = Planted(), planted_images(2)
    graph = readout(model, x[0], top_k=2)
    cases = [
        (lambda: circuit_faithfulness(model, x[:, :3], graph), r"cannot run on images of shape \(2, 3, 4, 4\)"),
        (lambda: circuit_faithfulness(model, x[0, 0], graph), r"must have shape \(B, C, H, W\)"),
        (lambda: circuit_faithfulness(model, x, graph, reference=x[:0]), r"reference images hold 0 images"),
        (lambda: circuit_faithfulness(model, x, graph, reference=planted_images(2)[..., :2]), r"reference images must have"),
        (lambda: circuit_faithfulness(model, x, graph, ablation="median"), r"ablation must be one of mean, zero"),
        (lambda: circuit_faithfulness(model, x, [graph]), r"one circuit per image: 1 circuits for 2 images"),
        (lambda: circuit_faithfulness(model, x, graph, random_draws=0), r"random_draws must be a positive integer"),
        (lambda: circuit_faithfulness(model, x, {"nodes": []}), r"needs the readout's 'layers'"),
        (lambda: circuit_faithfulness(nn.Sequential(nn.Conv2d(WIDTH, WIDTH, 1), nn.Flatten()), x, graph), r"measured at 'relu1'"),
        (lambda: faithfulness_curve(model, x, ks=[0, 2]), r"circuit size k .* must be an integer in \[1, 32\], got 0"),
        (lambda: faithfulness_curve(model, x, ks=[33]), r"got 33"),
        (lambda: faithfulness_curve(model, x, ks=[]), r"ks must be a non-empty list"),
        (lambda: part_overlap(model, x, torch.zeros(2, 3, 3, dtype=torch.bool), graph), r"part_masks must be"),
    ]
    for call, pattern in cases:
        with pytest.raises(InputError, match=pattern) as info:
            call()
        assert "\n" not in str(info.value)
    assert not any(module._forward_hooks for module in model.modules())  # a failed run leaves no hook behind


def test_channel_attribution_of_a_linear_network_is_weight_times_departure():
    """One read layer, linear after it: A[c] = W[t, c] * mean_ij (y_c - mu_c), and the A sum to z_t(x) - z_t(reference mean)."""
    from sparsex.explainers.circuit_sites import channel_attribution

    model = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4)[:, :, None, None])
        model[3].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, 1.0]]))
    x, reference = torch.rand(3, 4, 2, 2), torch.rand(5, 4, 2, 2)
    scores = channel_attribution(model, x, torch.tensor([0, 1, 0]), ["0"], {"0": "0"}, reference, steps=4)["0"]
    departure = (x - reference.mean(0)).mean(dim=(2, 3)).double()  # mean_ij (y - mu): conv 0 is the identity
    expected = model[3].weight.detach().double()[[0, 1, 0]] * departure
    assert torch.allclose(scores, expected, atol=1e-6)
    with torch.no_grad():
        gap = model(x) - model(reference.mean(0, keepdim=True))
    assert torch.allclose(scores.sum(1), gap[[0, 1, 2], [0, 1, 0]].double(), atol=1e-5)


def test_attribution_selection_finds_the_circuit_behind_a_decoy():
    """Channel 5 is the most active of both layers but feeds class 1 only: the paper's readout (by
    activation) keeps it, the attribution keeps the planted channels {0, 2}, and ablation confirms."""
    model, x = Planted(), planted_images(6)
    x[:, 5] += 2.0
    reference = planted_images(16, seed=3, planted=False)
    by_activation = [readout(model, x[i], top_k=2) for i in range(len(x))]
    by_attribution = [readout(model, x[i], top_k=2, selection="attribution", reference=reference, sufficient=False)
                      for i in range(len(x))]
    for graph in by_attribution:
        channels, _, target = circuit_channels(graph)
        assert target == 0 and {layer: sorted(c) for layer, c in channels.items()} == {"conv1": [0, 2], "conv2": [0, 2]}
        assert graph.graph["settings"]["selection"] == "attribution"
        assert all(d["attribution"] > 0 for _, d in graph.nodes(data=True) if d["kind"] == "channel")
    assert all(5 in circuit_channels(graph)[0]["conv1"] for graph in by_activation)
    kept = circuit_faithfulness(model, x, by_attribution, reference=reference)
    decoy = circuit_faithfulness(model, x, by_activation, reference=reference)
    assert kept["sufficiency"]["label"] == 1.0 and kept["activation"]["same"] == 0.0
    assert kept["necessity"]["drop"] > decoy["necessity"]["drop"] and kept["sufficiency"]["logit"] > decoy["sufficiency"]["logit"]
    # the attribution readout's default size, DEFAULT_SHARE of each layer's positive attribution: the planted channel
    # carrying most of it (conv1's channel 2 enters the logit twice, conv2's channel 0 sums both); 0.9: the pair, which
    # the default sufficient cut brings back to those two (they alone keep the label)
    for i in range(len(x)):
        graph = readout(model, x[i], selection="attribution", reference=reference)
        assert graph.graph["settings"]["share"] == DEFAULT_SHARE and graph.graph["settings"]["top_k"] is None
        assert {layer: sorted(c) for layer, c in circuit_channels(graph)[0].items()} == {"conv1": [2], "conv2": [0]}
        graph = readout(model, x[i], selection="attribution", reference=reference, share=0.9, sufficient=False)
        assert {layer: sorted(c) for layer, c in circuit_channels(graph)[0].items()} == {"conv1": [0, 2], "conv2": [0, 2]}
        graph = readout(model, x[i], selection="attribution", reference=reference, share=0.9)
        assert {layer: sorted(c) for layer, c in circuit_channels(graph)[0].items()} == {"conv1": [2], "conv2": [0]}
        assert graph.graph["selected"] == 4 and graph.graph["sufficient"] is True
    with pytest.raises(InputError, match="selection must be one of activation, attribution"):
        readout(model, x[0], selection="gradient")
    # over the circuit size: the attribution's circuits keep more of the logit at every k
    curves = {selection: faithfulness_curve(model, x, reference=reference, ks=[1, 2], selection=selection)
              for selection in ("activation", "attribution")}
    assert curves["attribution"]["selection"] == "attribution"
    for low, high in zip(curves["activation"]["points"], curves["attribution"]["points"]):
        assert high["sufficiency_logit"] > low["sufficiency_logit"]
    # sufficient_k: the first k whose circuits keep the label on >= 90% of the images (None if none)
    for curve in curves.values():
        assert curve["sufficient_k"] == next((p["k"] for p in curve["points"] if p["sufficiency_label"] >= 0.9), None)
    assert curves["attribution"]["sufficient_k"] is not None


class TwoChannels(nn.Module):
    """conv (1x1, identity on 2 channels) -> ReLU -> GAP -> fc: ``logit_0 = a_0 + a_1``, ``logit_1 = 1.5``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv2d(2, 2, 1, bias=False), nn.ReLU()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2)[:, :, None, None])
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 1.5]))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("selection", ["attribution", "activation"])
def test_sufficient_cut_keeps_the_fewest_channels_that_alone_keep_the_label(selection):
    """Reference: a black image (means 0). The attribution of a linear network is weight x departure, A = a, the
    activation a too, so both rank channel 0 first on these images. Channels a = (1, 0.8): logits (1.8, 1.5); channel 0
    alone gives (1, 1.5), the label lost: both stay. a = (2, 0.3): channel 0 alone gives (2, 1.5): the cut keeps it
    alone. a = (0.5, 0.5), target 0 (the prediction is 1): no prefix keeps class 0 ahead, so both stay and the circuit
    is marked not sufficient."""
    model, reference = TwoChannels(), torch.zeros(1, 2, 2, 2)
    cases = [((1.0, 0.8), [0, 1], True), ((2.0, 0.3), [0], True), ((0.5, 0.5), [0, 1], False)]
    graphs = []
    for channels, expected, sufficient in cases:
        x = torch.tensor(channels).view(1, 2, 1, 1).expand(1, 2, 2, 2)
        graph = readout(model, x, target=0, top_k=2, selection=selection, reference=reference, sufficient=True)
        assert circuit_channels(graph)[0] == {"conv": expected}
        assert graph.graph["selected"] == 2 and graph.graph["sufficient"] is sufficient
        assert graph.graph["settings"]["sufficient"] is True
        uncut = readout(model, x, target=0, top_k=2, selection=selection, reference=reference, sufficient=False)
        assert circuit_channels(uncut)[0] == {"conv": [0, 1]} and uncut.graph["sufficient"] is None
        graphs.append(graph)
    # ablation confirms: the circuits marked sufficient keep the label alone, the third does not
    x = torch.stack([torch.tensor(c).view(2, 1, 1).expand(2, 2, 2) for c, _, _ in cases])
    measured = circuit_faithfulness(model, x, graphs, reference=reference)
    assert [p["sufficiency_label"] for p in measured["per_image"]] == [True, True, False]
    # the default: cut for the attribution readout, not for the paper's
    x = torch.tensor((2.0, 0.3)).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    default = readout(model, x, top_k=2, selection=selection, reference=reference)
    assert default.graph["settings"]["sufficient"] is (selection == "attribution")
    assert circuit_channels(default)[0] == {"conv": [0] if selection == "attribution" else [0, 1]}
    with pytest.raises(InputError, match="sufficient must be True or False"):
        readout(model, x, selection=selection, sufficient="yes")


def test_reference_means_taken_once_serve_readouts_and_ablations():
    from sparsex.explainers.circuit_sites import reference_means

    model, x = Planted(), planted_images(4)
    reference = planted_images(16, seed=3, planted=False)
    means = reference_means(model, reference, ["conv1", "conv2"], {"conv1": "relu1", "conv2": "relu2"})
    assert means.images == 16
    for i in range(len(x)):
        from_images = readout(model, x[i], top_k=3, selection="attribution", reference=reference)
        from_means = readout(model, x[i], top_k=3, selection="attribution", reference=means)
        assert circuit_channels(from_images) == circuit_channels(from_means)
        for node, data in from_images.nodes(data=True):
            if data["kind"] == "channel":
                assert from_means.nodes[node]["attribution"] == pytest.approx(data["attribution"])
    graphs = [readout(model, x[i], top_k=2) for i in range(len(x))]
    by_images = circuit_faithfulness(model, x, graphs, reference=reference)
    by_means = circuit_faithfulness(model, x, graphs, reference=means)
    assert by_means["sufficiency"] == pytest.approx(by_images["sufficiency"]) and by_means["reference_images"] == 16
    assert by_means["necessity"] == pytest.approx(by_images["necessity"])
    elsewhere = reference_means(model, reference, ["conv1"], {"conv1": "conv1"})
    with pytest.raises(InputError, match="reference means were taken at the layers"):
        readout(model, x[0], selection="attribution", reference=elsewhere)


class Residual(nn.Module):
    """conv1 + ReLU, conv2, then a shortcut added and a ReLU: in place (a timm ResNet block's way) or not."""

    def __init__(self, in_place: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.relu1, self.conv2 = nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1)
        self.fc, self.in_place = nn.Linear(4, 3), in_place

    def forward(self, x):
        h = self.relu1(self.conv1(x))
        y = self.conv2(h)
        if self.in_place:
            y += h
            y = y.relu_()
        else:
            y = (y + h).relu()
        return self.fc(y.mean(dim=(2, 3)))


def test_attribution_and_means_are_untouched_by_in_place_ops_after_a_read_layer():
    from sparsex.explainers.circuit_sites import channel_attribution, reference_means

    x, reference = torch.rand(3, 4, 5, 5), torch.rand(6, 4, 5, 5)
    layers, at = ["a", "b"], {"a": "relu1", "b": "conv2"}
    results = {}
    for in_place in (False, True):
        model = Residual(in_place)  # trainable weights: the attribution must leave their .grad alone
        means = reference_means(model, reference, layers, at)
        scores = channel_attribution(model, x, torch.tensor([0, 1, 2]), layers, at, means, steps=4)
        results[in_place] = (means.means, scores)
        assert all(p.grad is None for p in model.parameters())
    for layer in layers:
        assert torch.allclose(results[True][0][layer], results[False][0][layer])
        assert torch.allclose(results[True][1][layer], results[False][1][layer], atol=1e-6)
