import pytest
import torch
from torch import nn

from sparsex.errors import InputError
from sparsex.features import FeatureCache
from sparsex.models import create_model
from sparsex.models.gallery import build_gallery, load_gallery, save_gallery


def tiny_head(in_channels: int, num_classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("side", in_channels=in_channels, num_classes=num_classes, expanded_channels=4).eval()


def one_line(error: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(error.value) and str(error.value) != ""


def test_gallery_holds_the_top_k_items_of_every_prototype():
    head = tiny_head(6)
    feats = torch.randn(20, 6, 5, 5, generator=torch.Generator().manual_seed(1))
    gallery = build_gallery(head, feats, k=3, batch_size=7)  # 3 batches: the running top-k must merge
    with torch.no_grad():
        out = head(feats)
    assert gallery.indices.shape == (8, 3) and gallery.indices.dtype == torch.int64 and gallery.feature_size == (5, 5)
    brute = out.scores.T.sort(dim=1, descending=True).values[:, :3]
    torch.testing.assert_close(gallery.scores, brute)
    for p in range(8):
        assert len(set(gallery.indices[p].tolist())) == 3
        for m in range(3):
            n = int(gallery.indices[p, m])
            assert out.scores[n, p] == gallery.scores[p, m] and out.locations[n, p] == gallery.locations[p, m]
    assert (gallery.labels == -1).all() and gallery.num_items == 20
    assert build_gallery(head, feats[:2], k=5).k == 2  # fewer items than k


def test_gallery_from_a_feature_cache_uses_its_indices_and_labels(tmp_path):
    head = tiny_head(6)
    feats = torch.randn(9, 6, 4, 4, generator=torch.Generator().manual_seed(2))
    cache = FeatureCache(tmp_path, {}, feats, torch.arange(9) % 3, torch.arange(100, 109), ["a", "b", "c"])
    gallery, plain = build_gallery(head, cache, k=2), build_gallery(head, feats, k=2)
    assert torch.equal(gallery.indices, plain.indices + 100) and torch.equal(gallery.labels, plain.indices % 3)


def test_gallery_round_trip_and_staleness(tmp_path):
    head = tiny_head(6)
    gallery = build_gallery(head, torch.randn(10, 6, 3, 3), k=4)
    assert load_gallery(tmp_path) is None
    (tmp_path / "config.json").write_text('{"v": 1}')
    save_gallery(tmp_path, gallery)
    again = load_gallery(tmp_path)
    for name in ("indices", "locations", "scores", "labels"):
        assert torch.equal(getattr(again, name), getattr(gallery, name))
    assert again.feature_size == (3, 3) and again.num_items == 10
    (tmp_path / "config.json").write_text('{"v": 2}')  # another checkpoint config: the gallery is stale
    assert load_gallery(tmp_path) is None
    (tmp_path / "gallery.safetensors").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable gallery"):
        assert load_gallery(tmp_path) is None


def test_gallery_rejects_bad_features():
    head = tiny_head(6)
    for bad in (torch.randn(6, 3, 3), torch.randn(2, 5, 3, 3)):
        with pytest.raises(InputError) as e:
            build_gallery(head, bad)
        assert one_line(e)
    nan = torch.randn(4, 6, 3, 3)
    nan[3, 0, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN") as e:
        build_gallery(head, nan, batch_size=2)
    assert one_line(e)
