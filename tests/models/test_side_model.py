import pytest
import torch

from sparsex.errors import InputError, SparsexError
from sparsex.models import create_model, list_models


def tiny(name="side", **kw):
    torch.manual_seed(0)
    return create_model(name, in_channels=6, num_classes=3, expanded_channels=4, **kw)


def test_registered():
    assert {"side", "infodisent"} <= set(list_models())


def test_forward_shapes_and_pooling_by_hand():
    head = tiny()
    features = torch.randn(2, 6, 3, 5)
    out = head(features)
    assert out.logits.shape == (2, 3) and out.scores.shape == (2, 8) and out.maps.shape == (2, 8, 3, 5)
    z = torch.einsum("oc,bchw->bohw", head.disentangle.weight, head.expand(features))
    maps = torch.cat([z, -z], 1)  # positive and negative direction of each channel
    torch.testing.assert_close(out.maps, maps)
    torch.testing.assert_close(out.scores, maps.flatten(2).amax(2).clamp_min(0))
    assert torch.equal(out.locations, maps.flatten(2).argmax(2))
    torch.testing.assert_close(out.logits, out.scores @ torch.relu(head.weight).T + head.bias)


def test_disentanglement_is_orthogonal_after_training_steps():
    head = tiny()
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    for _ in range(3):
        head(torch.randn(4, 6, 2, 2)).logits.sum().backward()
        opt.step()
        opt.zero_grad()
    u = head.disentangle.weight
    torch.testing.assert_close(u @ u.T, torch.eye(4), atol=1e-5, rtol=0)


def test_side_starts_at_the_class_prior():
    torch.testing.assert_close(torch.sigmoid(tiny().bias), torch.full((3,), 1 / 3))  # sigmoid(-log(K - 1)) = 1/K


def test_side_weights_are_non_negative_and_dense_signed():
    side, dense = tiny(), tiny("infodisent")
    with torch.no_grad():
        side.weight.fill_(-1.0)
        dense.weight.fill_(-1.0)
    assert side.class_weights().max() == 0 and dense.class_weights().min() == -1
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    torch.testing.assert_close(side.probabilities(logits), torch.sigmoid(logits))
    torch.testing.assert_close(dense.probabilities(logits), torch.softmax(logits, 1))


def test_prune_keeps_the_a_largest_weights_per_class():
    head = tiny()
    with torch.no_grad():
        head.weight.copy_(torch.arange(24, dtype=torch.float32).view(3, 8))
    head.prune(2)
    kept = head.class_weights() > 0
    assert kept.sum(1).tolist() == [2, 2, 2] and kept[:, 6:].all()
    with pytest.raises(SparsexError, match="between 1 and the number of prototypes \\(8\\)"):
        head.prune(9)
    with pytest.raises(SparsexError, match="only SIDE is pruned; InfoDisent keeps all its weights"):
        tiny("infodisent").prune(2)


def test_bad_config_and_inputs():
    with pytest.raises(SparsexError, match="num_classes=1"):
        create_model("side", in_channels=4, num_classes=1)
    with pytest.raises(SparsexError, match="expanded_channels must be a positive integer, got 0"):
        create_model("side", in_channels=4, num_classes=2, expanded_channels=0)
    head = tiny()
    with pytest.raises(InputError, match=r"expects features \(B, 6, h, w\), got \(2, 5, 3, 3\)"):
        head(torch.randn(2, 5, 3, 3))
    bad = torch.randn(1, 6, 2, 2)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="Inf"):
        head(bad)
