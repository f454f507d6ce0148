import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sparsex.checkpoint import save_checkpoint
from sparsex.errors import InputError, SparsexError
from sparsex.models import create_model, list_models, load_model


def tiny(**kw):
    torch.manual_seed(0)
    return create_model("protosvit", in_channels=6, num_classes=3, num_prototypes=5, embed_dim=4, **kw)


def test_registered():
    assert "protosvit" in list_models()


def test_forward_by_hand():
    head = tiny()
    features = torch.randn(2, 6, 3, 4)
    out = head(features)
    assert out.logits.shape == (2, 3) and out.scores.shape == (2, 5) and out.maps.shape == (2, 5, 3, 4)
    z = F.normalize(head.project(features) + head.project_branch(features), dim=1)
    q = F.normalize(head.prototypes, dim=1)
    cos = torch.einsum("bdhw,pd->bphw", z, q)
    a = torch.softmax(cos / 0.1, dim=1)  # soft assignment of each patch to the prototypes
    torch.testing.assert_close(head.similarities(features), a)
    torch.testing.assert_close(a.sum(1), torch.ones(2, 3, 4))
    m = head.pointwise(head.spatial(a))
    m = torch.relu(F.layer_norm(m.permute(0, 2, 3, 1), (5,), head.norm.weight, head.norm.bias).permute(0, 3, 1, 2))
    torch.testing.assert_close(out.maps, m)
    torch.testing.assert_close(out.scores, m.flatten(2).amax(2))
    assert torch.equal(out.locations, m.flatten(2).argmax(2))
    torch.testing.assert_close(out.logits, out.scores @ head.class_weights().T)  # no bias


def test_prototype_head_is_depthwise():
    head = tiny()
    assert head.spatial.groups == head.pointwise.groups == 5
    features = torch.randn(1, 6, 4, 4)
    base = head.spatial(head.similarities(features))
    a = head.similarities(features).clone()
    a[:, 2] += 1.0  # change one prototype's map: only that prototype's output moves
    moved = (head.spatial(a) - base).abs().flatten(2).amax(2)[0]
    assert moved[2] > 0 and torch.count_nonzero(moved) == 1


def test_weights_clamped_non_negative_by_constrain():
    head = tiny()
    with torch.no_grad():
        head.weight[0, 0] = -0.5
    assert head.class_weights()[0, 0] == 0
    head.constrain()
    assert head.weight.min() >= 0


def test_importance_threshold_zeroes_small_importances_at_inference_only():
    head = tiny(importance_threshold=0.05)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.01, 0.2, 0.0, 0.3, 0.04], [0.5, 0.0, 0.02, 0.0, 0.1], [0.0] * 5]))
    features = torch.randn(3, 6, 2, 2)
    head.train()
    scores = head(features).scores
    torch.testing.assert_close(head(features).logits, scores @ head.class_weights().T)
    head.eval()
    importances = scores[:, None, :] * head.class_weights()[None]
    expected = torch.where(importances > 0.05, importances, torch.zeros(())).sum(2)
    torch.testing.assert_close(head(features).logits, expected)
    assert head.contribution_threshold == 0.05


def test_prune_unused_removes_connections_that_never_matter():
    head = tiny(importance_threshold=0.05)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.3, 0.04], [0.5, 0.0, 0.02, 0.01, 0.1], [0.2] * 5]))
    # largest importance W[c, p] * max_s[p] with max_s = [0, 2, 1e-4, 0.5, 1]:
    #   class 0: [0, 0.4, 3e-5, 0.15, 0.04]  -> prune p0, p2, p4 (<= 0.05)
    #   class 1: [0, 0, 2e-6, 0.005, 0.1]    -> prune p0, p1, p2, p3
    #   class 2: [0, 0.4, 2e-5, 0.1, 0.2]    -> prune p0, p2
    assert head.prune_unused(torch.tensor([0.0, 2.0, 1e-4, 0.5, 1.0])) == 9
    assert head.connections.tolist() == [[0, 1, 0, 1, 0], [0, 0, 0, 0, 1], [0, 1, 0, 1, 1]]
    assert (head.class_weights()[head.connections == 0] == 0).all()
    assert head.prune_unused(torch.tensor([0.0, 2.0, 1e-4, 0.5, 1.0])) == 0  # idempotent
    with pytest.raises(InputError, match=r"max_scores must have shape \(5,\)"):
        head.prune_unused(torch.zeros(4))
    # a floor of 0.15 also removes class 0's p3 (0.15), class 1's p4 (0.1) and class 2's p3 (0.1); class 2's p4 (0.2) stays
    assert head.prune_unused(torch.tensor([0.0, 2.0, 1e-4, 0.5, 1.0]), floor=0.15) == 3
    assert head.connections.tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 1]]


def test_checkpoint_round_trip_keeps_pruning_and_threshold(tmp_path):
    head = tiny(importance_threshold=0.01)
    assert head.prune_unused(torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0])) >= 3
    settings = dataclasses.asdict(head.config)
    save_checkpoint(tmp_path / "ck", head, "protosvit", {"model": {"name": "protosvit", **settings}})
    loaded, _ = load_model(tmp_path / "ck", family="protosvit")
    features = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(loaded(features).logits, head.eval()(features).logits)
    assert (loaded.connections[:, 0] == 0).all() and loaded.contribution_threshold == 0.01


@pytest.mark.parametrize("kw, pattern", [
    (dict(num_prototypes=0), "num_prototypes must be a positive integer, got 0"),
    (dict(temperature=0.0), "temperature must be a finite number > 0"),
    (dict(importance_threshold=-1.0), "importance_threshold must be a finite number >= 0"),
    (dict(num_classes=1), "at least 2 classes"),
    (dict(weight_init="kaiming"), "unknown ProtoS-ViT weight_init 'kaiming'; valid: vote, official"),
])
def test_bad_settings(kw, pattern):
    settings = dict(in_channels=6, num_classes=3, num_prototypes=5, embed_dim=4) | kw
    with pytest.raises(SparsexError, match=pattern):
        create_model("protosvit", **settings)


@pytest.mark.parametrize("preset, weight_init, bound", [
    ("sparsex", None, 1 / 20), ("sparsex", "vote", 2 / 400), ("official", None, 1 / 20), ("official", "vote", 2 / 400),
])
def test_weight_init_of_each_preset_and_its_override(preset, weight_init, bound):
    """official (both presets' default): |U(-1/sqrt(P), 1/sqrt(P))|; vote: U(0, 2/P) (P = 400: bounds 0.05 and 0.005,
    means 0.025 and 0.0025)."""
    torch.manual_seed(0)
    head = create_model("protosvit", in_channels=6, num_classes=50, num_prototypes=400, embed_dim=4, preset=preset,
                        weight_init=weight_init)
    assert head.weight.min() >= 0 and head.weight.max() <= bound
    assert head.weight.mean().item() == pytest.approx(bound / 2, rel=0.02)


def test_bad_features():
    head = tiny()
    with pytest.raises(InputError, match=r"ProtoS-ViT head expects features \(B, 6, h, w\), got \(2, 5, 3, 3\)"):
        head(torch.randn(2, 5, 3, 3))
    with pytest.raises(InputError, match="NaN"):
        head(torch.full((1, 6, 2, 2), float("nan")))
