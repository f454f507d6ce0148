"""The ``official`` ProtoS-ViT preset: hand-computed head outputs on a 2-prototype, 2-class, 2x2-map
case, and agreement with a port of the public code (github.com/hturbe/protosvit)."""

import math

import pytest
import torch
import torch.nn.functional as F

from sparsex.checkpoint import save_checkpoint
from sparsex.errors import SparsexError
from sparsex.models import create_model, load_model


def head_of(preset, **kw):
    torch.manual_seed(0)
    settings = dict(in_channels=6, num_classes=2, num_prototypes=2, embed_dim=4, preset=preset) | kw
    return create_model("protosvit", **settings).double().eval()


def set_prototype_head(head):
    """Depthwise 3x3 kernels with only the centre tap 1 (identity), spatial bias [1, 0], 1x1 weights 1 and
    bias 0, LayerNorm weight 1 and bias 0."""
    with torch.no_grad():
        head.spatial.weight.zero_()
        head.spatial.weight[:, 0, 1, 1] = 1.0
        head.spatial.bias.copy_(torch.tensor([1.0, 0.0]))
        head.pointwise.weight.fill_(1.0)
        head.pointwise.bias.zero_()
        head.norm.weight.fill_(1.0)
        head.norm.bias.zero_()


# One image, 2 prototypes, a 2x2 map: A0 at the patches (row-major) [1, 0.5, 0, 0.25], A1 = 1 - A0.
A0 = torch.tensor([[1.0, 0.5], [0.0, 0.25]], dtype=torch.float64)
SIMILARITIES = torch.stack([A0, 1 - A0])[None]


def test_prototype_maps_hand_computed_sparsex_preset():
    # in sequence: a = (A0 + 1, A1) -> per patch (2, 0), (1.5, 0.5), (1, 1), (1.25, 0.75);
    # LayerNorm over two values (x, y): +-d / sqrt(d^2 + eps) with d = (x - y) / 2 = [1, 0.5, 0, 0.25], eps 1e-5
    head = head_of("sparsex")
    set_prototype_head(head)
    maps = head.maps_from_similarities(SIMILARITIES)[0].flatten(1)
    d = torch.tensor([1.0, 0.5, 0.0, 0.25], dtype=torch.float64)
    torch.testing.assert_close(maps[0], d / torch.sqrt(d**2 + 1e-5), rtol=0, atol=1e-12)
    torch.testing.assert_close(maps[1], torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)


def test_prototype_maps_hand_computed_official_preset():
    # in parallel: a = (2 A0 + 1, 2 A1) -> per patch (3, 0), (2, 1), (1, 2), (1.5, 1.5); d = [1.5, 0.5, -0.5, 0],
    # LayerNorm eps 1e-6: prototype 0 wins patches 0 and 1, prototype 1 patch 2
    head = head_of("official")
    set_prototype_head(head)
    maps = head.maps_from_similarities(SIMILARITIES)[0].flatten(1)
    expected0 = [1.5 / math.sqrt(2.25 + 1e-6), 0.5 / math.sqrt(0.25 + 1e-6), 0.0, 0.0]
    expected1 = [0.0, 0.0, 0.5 / math.sqrt(0.25 + 1e-6), 0.0]
    assert maps[0].tolist() == pytest.approx(expected0, abs=1e-12)
    assert maps[1].tolist() == pytest.approx(expected1, abs=1e-12)


def test_logits_hand_computed_with_the_weight_clamp_and_the_threshold_comparison():
    # scores [0.5, 1], raw W = [[0.2, 7], [-1, 0.1]], threshold 0.1 (importances 0.5 * 0.2 and 1 * 0.1 are exactly it)
    scores = torch.tensor([[0.5, 1.0]])
    raw = torch.tensor([[0.2, 7.0], [-1.0, 0.1]])
    logits = {}
    for preset in ("sparsex", "official"):
        head = create_model("protosvit", in_channels=3, num_classes=2, num_prototypes=2, embed_dim=2,
                            importance_threshold=0.1, preset=preset)
        with torch.no_grad():
            head.weight.copy_(raw)
        logits[preset, "train"] = head.train().logits(scores)[0].tolist()
        logits[preset, "eval"] = head.eval().logits(scores)[0].tolist()
        head.constrain()
        logits[preset, "max_weight"] = head.weight.max().item()
    # official: W -> [[0.2, 5], [0, 0.1]]; importances [[0.1, 5], [0, 0.1]], kept when >= 0.1
    assert logits["official", "train"] == pytest.approx([5.1, 0.1])
    assert logits["official", "eval"] == pytest.approx([5.1, 0.1])
    assert logits["official", "max_weight"] == 5.0
    # sparsex: W -> [[0.2, 7], [0, 0.1]]; importances [[0.1, 7], [0, 0.1]], kept when > 0.1
    assert logits["sparsex", "train"] == pytest.approx([7.1, 0.1])
    assert logits["sparsex", "eval"] == pytest.approx([7.0, 0.0])
    assert logits["sparsex", "max_weight"] == 7.0


def test_projection_layers_of_each_preset():
    official, sparsex = head_of("official", in_channels=6, embed_dim=4), head_of("sparsex", in_channels=6, embed_dim=4)
    assert [type(m).__name__ for m in official.project_branch] == ["Conv2d", "ReLU", "Conv2d"]
    assert official.project_branch[0].out_channels == 6 and official.project_out.weight.shape == (4, 4, 1, 1)
    assert official.dropout.p == 0.1 and official.norm.eps == 1e-6
    assert [type(m).__name__ for m in sparsex.project_branch] == ["Conv2d", "GELU", "Conv2d"]
    assert sparsex.project_branch[0].out_channels == 4 and not hasattr(sparsex, "project_out")
    assert sparsex.norm.eps == 1e-5


def test_official_dropout_is_active_in_training_only():
    head = head_of("official", in_channels=16, embed_dim=8, num_prototypes=5)
    features = torch.randn(2, 16, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(head(features).logits, head(features).logits)
    head.train()
    assert not torch.allclose(head(features).similarities, head(features).similarities)


def official_forward(head, features, threshold):
    """The official eval-mode forward, transcribed from hturbe/protosvit (DinoFeaturizer.forward,
    ClassificationModulePrototype.backbone_project and .forward, NonNegLinear.forward) with our
    head's parameters as the official modules' (dropout is the identity in eval mode)."""
    b, d = features.shape[0], head.config.embed_dim
    code = head.project(features) + head.project_branch(features)  # cluster1 + cluster2
    modeloutput_s = code.permute(0, 2, 3, 1).reshape(-1, d)
    modeloutput_z = F.linear(F.relu(modeloutput_s), head.project_out.weight.view(d, d), head.project_out.bias)
    modeloutput_z = F.normalize(modeloutput_z.reshape(b, -1, d), dim=-1)
    prototypes = head.prototypes.unsqueeze(0).repeat(b, 1, 1)
    similarity = torch.einsum("bic, bnc -> bni", F.normalize(modeloutput_z, dim=-1), F.normalize(prototypes, dim=-1))
    similarity = F.softmax(similarity / 0.1, dim=1)
    h = w = int(similarity.shape[-1] ** 0.5)
    similarity_reshaped = similarity.reshape(b, -1, h, w)
    similarity_reshaped = head.spatial(similarity_reshaped) + head.pointwise(similarity_reshaped)  # conv1 + conv2
    similarity_reshaped = F.layer_norm(similarity_reshaped.permute(0, 2, 3, 1), (head.config.num_prototypes,),
                                       head.norm.weight, head.norm.bias, 1e-6).permute(0, 3, 1, 2)
    similarity_score = F.relu(similarity_reshaped).amax(dim=(2, 3))
    weight = head.weight.detach().clone().clamp_(0, 5)
    importance = torch.einsum("bp,cp->bpc", similarity_score, weight)
    importance[importance < threshold] = 0
    return similarity.reshape(b, -1, h, w), similarity_score, importance.sum(dim=1)


def test_official_preset_agrees_with_a_port_of_the_public_code():
    torch.manual_seed(1)
    head = create_model("protosvit", in_channels=12, num_classes=4, num_prototypes=9, embed_dim=8, preset="official",
                        importance_threshold=0.05).eval()
    with torch.no_grad():
        head.weight.copy_(torch.randn(4, 9) * 4)  # some weights below 0 and above 5
        for module in (head.spatial, head.pointwise):
            module.weight.normal_()
            module.bias.normal_()
    features = torch.randn(3, 12, 4, 4)
    with torch.no_grad():
        out = head(features)
        similarities, scores, logits = official_forward(head, features, 0.05)
    torch.testing.assert_close(out.similarities, similarities, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.scores, scores, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-5)
    assert (head.weight > 5).any() and (head.weight < 0).any()


def test_checkpoint_records_the_preset(tmp_path):
    head = head_of("official", importance_threshold=0.01).float()
    settings = head.config.to_dict()
    assert settings["preset"] == "official"
    save_checkpoint(tmp_path / "ck", head, "protosvit", {"model": {"name": "protosvit", **settings}})
    loaded, _ = load_model(tmp_path / "ck", family="protosvit")
    assert loaded.config.preset == "official" and hasattr(loaded, "project_out")
    features = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(loaded(features).logits, head(features).logits)


def test_unknown_preset():
    with pytest.raises(SparsexError, match="unknown ProtoS-ViT preset 'paper'; valid presets: sparsex, official"):
        create_model("protosvit", in_channels=3, num_classes=2, preset="paper")


def test_prune_keeps_a_connection_exactly_at_the_threshold_in_the_official_preset():
    # largest importances W * max_scores with max_scores [1, 1]: [[0.1, 0.05], [0.2, 0]], threshold 0.1
    pruned = {}
    for preset in ("sparsex", "official"):
        head = create_model("protosvit", in_channels=3, num_classes=2, num_prototypes=2, embed_dim=2,
                            importance_threshold=0.1, preset=preset)
        with torch.no_grad():
            head.weight.copy_(torch.tensor([[0.1, 0.05], [0.2, 0.0]]))
        head.prune_unused(torch.ones(2))
        pruned[preset] = head.connections.tolist()
    assert pruned["official"] == [[1, 0], [1, 0]]  # 0.1 >= 0.1 is kept, as in its logits
    assert pruned["sparsex"] == [[0, 0], [1, 0]]
