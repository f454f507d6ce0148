"""The official (ProtoS-ViT FunnyBirds) evidence map of the ``prototypes`` explainer."""

import pytest
import torch
from test_prototype_explainer import PoolBackbone
from torch import nn

from sparsex.errors import InputError
from sparsex.explainers import PrototypeExplainer, create_explainer
from sparsex.models import PrototypeOutput, create_model


class HandHead(nn.Module):
    """Two prototypes, two classes, 2x2 similarity maps fixed by hand; scores s = [2, 1],
    W = [[1, 3], [0.5, 0]]: class 0's importances are [2, 3] (logit 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[1.0, 3.0], [0.5, 0.0]]))
        self.sims = torch.tensor([[[0.5, 0.1], [0.2, 0.2]], [[0.5, 0.9], [0.8, 0.8]]])

    def class_weights(self) -> torch.Tensor:
        return self.weight

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        return self.sims.expand(features.shape[0], -1, -1, -1)

    def forward(self, features: torch.Tensor) -> PrototypeOutput:
        b = features.shape[0]
        scores = torch.tensor([2.0, 1.0]).expand(b, -1)
        maps = self.similarities(features)
        return PrototypeOutput(scores @ self.weight.T, scores, maps, maps.flatten(2).argmax(2))


def test_official_map_hand_computed():
    # nearest upsampling 2x2 -> 4x4 repeats each cell in a 2x2 block: map masses 4 * 1.0 and 4 * 3.0.
    # block (0, 0): 2 * 0.5 / 4 + 3 * 0.5 / 12 = 0.375; (0, 1): 2 * 0.1 / 4 + 3 * 0.9 / 12 = 0.275;
    # (1, 0) and (1, 1): 2 * 0.2 / 4 + 3 * 0.8 / 12 = 0.3. Sum: 4 * 1.25 = 5 = the logit.
    evidence = PrototypeExplainer(HandHead(), PoolBackbone(2), mode="official").attribute(torch.rand(1, 3, 4, 4), 0)
    expected = torch.tensor([[0.375, 0.275], [0.3, 0.3]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert evidence.shape == (1, 1, 4, 4)
    assert torch.allclose(evidence[0, 0], expected, atol=1e-6)
    assert evidence.sum().item() == pytest.approx(5.0, abs=1e-5)
    # class 1: importances [1, 0], logit 1: the map is prototype 0's normalised similarity
    evidence1 = PrototypeExplainer(HandHead(), PoolBackbone(2), mode="official").attribute(torch.rand(1, 3, 4, 4), 1)
    assert torch.allclose(evidence1[0, 0], torch.tensor([[0.5, 0.1], [0.2, 0.2]]).repeat_interleave(2, 0)
                          .repeat_interleave(2, 1) / 4, atol=1e-6)
    # sparsex's map is a different one (bilinear post-head maps, unnormalised): 2 * S_0 + 3 * S_1 upsampled
    sparsex_map = PrototypeExplainer(HandHead(), PoolBackbone(2)).attribute(torch.rand(1, 3, 4, 4), 0)
    assert sparsex_map.sum().item() == pytest.approx(16 * (2 * 0.25 + 3 * 0.75), abs=1e-4)


def official_explain(head: nn.Module, features: torch.Tensor, img_size: int, target: int) -> torch.Tensor:
    """hturbe/protosvit src/evaluation/funny_birds/explainers/explainer_wrapper.py,
    ProtoExplainer.explain, transcribed for one image (square, as there): the model's
    ``similarity_prototype (1, P, h*w)`` and ``importance (1, P, K)`` (zeroed below the
    threshold)."""
    out = head(features)
    threshold = head.config.importance_threshold
    importance = torch.einsum("bp,cp->bpc", out.scores, head.class_weights())
    importance[importance < threshold] = 0
    similarity = head.similarities(features).flatten(2)[0]
    h = w = int(similarity.shape[-1] ** 0.5)
    similarity = similarity.reshape(similarity.shape[0], h, w)
    similarity = similarity.unsqueeze(1)
    similarity_scaled = torch.nn.functional.interpolate(similarity, size=(img_size, img_size), scale_factor=None)
    similarity_scaled = similarity_scaled.squeeze(1).reshape(similarity.shape[0], -1)
    similarity_scaled = similarity_scaled / similarity_scaled.sum(dim=1)[:, None]
    similarity_weighted = torch.einsum("pi,bp->bi", similarity_scaled, importance[..., target].squeeze(-1))
    return similarity_weighted[0].reshape(img_size, img_size)


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_official_map_matches_an_independent_port(threshold):
    torch.manual_seed(0)
    head = create_model("protosvit", in_channels=3, num_classes=3, num_prototypes=6, embed_dim=5,
                        importance_threshold=threshold).eval()
    with torch.no_grad():
        head.weight.uniform_(0, 0.5)
    backbone = PoolBackbone(4)
    images = torch.rand(3, 3, 30, 30, generator=torch.Generator().manual_seed(1))  # 7x7 maps: uneven nearest blocks
    explainer = PrototypeExplainer(head, backbone, mode="official")
    targets = torch.tensor([0, 2, 1])
    maps = explainer.attribute(images, targets)
    with torch.no_grad():
        logits = head(backbone.extract(images)).logits
        for b in range(3):
            port = official_explain(head, backbone.extract(images[b:b + 1]), 30, int(targets[b]))
            assert torch.allclose(maps[b, 0], port, atol=1e-5, rtol=0)
            # the map sums to the explained logit
            assert maps[b].sum().item() == pytest.approx(logits[b, targets[b]].item(), rel=1e-4)
    if threshold:  # the threshold drops some importances, so it is exercised
        importances = head(backbone.extract(images)).scores[:, None, :] * head.class_weights()[None]
        assert ((importances > 0) & (importances <= threshold)).any()


def test_official_mode_needs_softmax_similarities():
    side = create_model("side", in_channels=3, num_classes=4, expanded_channels=4)
    with pytest.raises(InputError, match="mode='official'.*needs a head with softmax similarities") as error:
        PrototypeExplainer(side, PoolBackbone(4), mode="official")
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="mode must be one of 'sparsex', 'official', got 'ours'"):
        PrototypeExplainer(side, PoolBackbone(4), mode="ours")


def test_registered_explainer_takes_the_mode():
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.head = create_model("protosvit", in_channels=3, num_classes=3, num_prototypes=4, embed_dim=4)
            self.backbone = PoolBackbone(4)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone.extract(images)).logits

    model = Model().eval()
    images = torch.rand(2, 3, 16, 16)
    maps = create_explainer("prototypes", model, mode="official").attribute(images)
    with torch.no_grad():
        logits = model(images)
    assert torch.allclose(maps.sum(dim=(1, 2, 3)), logits.max(dim=1).values, rtol=1e-4)
