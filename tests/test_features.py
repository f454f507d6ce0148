import json

import pytest
import torch
from conftest import TinyImages

from sparsex.backbones import create_backbone
from sparsex.errors import DataError, SparsexError
from sparsex.features import FeatureCache, extract_features


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("small-cnn")


def test_first_run_extracts_second_is_a_hit(tmp_path, backbone):
    data = TinyImages(n=10)
    cache, hit = extract_features(data, backbone, tmp_path, batch_size=4, progress=False)
    assert not hit and len(cache) == 10 and cache.features.shape == (10, 64, 7, 7)
    expected = backbone.extract(torch.stack([data[i]["image"] for i in range(10)]))
    torch.testing.assert_close(cache.features, expected)
    assert cache.labels.tolist() == [i % 3 for i in range(10)] and cache.indices.tolist() == list(range(10))
    assert cache[3]["label"] == 0 and cache.classes == ["c0", "c1", "c2"]

    again, hit = extract_features(data, backbone, tmp_path, batch_size=4, progress=False)
    assert hit and again.path == cache.path and torch.equal(again.features, cache.features)


def test_any_key_change_gives_a_new_entry(tmp_path, backbone):
    base, _ = extract_features(TinyImages(n=4), backbone, tmp_path, progress=False)
    other_data, hit1 = extract_features(TinyImages(n=4, seed=1), backbone, tmp_path, progress=False)
    half, hit2 = extract_features(TinyImages(n=4), backbone, tmp_path, dtype="float16", progress=False)
    other_weights = create_backbone("small-cnn", seed=1)  # other random weights
    reweighted, hit3 = extract_features(TinyImages(n=4), other_weights, tmp_path, progress=False)
    assert not (hit1 or hit2 or hit3)
    assert len({base.path, other_data.path, half.path, reweighted.path}) == 4
    assert half.features.dtype == torch.float16
    key = json.loads((base.path / "key.json").read_text())
    assert key["dataset"]["seed"] == 0 and key["backbone"]["name"] == "small-cnn" and len(key["weights_sha256"]) == 64


class FailingImages(TinyImages):
    """Raises at item ``fail_at``, standing in for an interruption mid-extraction."""

    def __init__(self, fail_at: int | None, **kw) -> None:
        super().__init__(**kw)
        self.fail_at = fail_at
        self.reads = 0

    def __getitem__(self, i):
        self.reads += 1
        if i == self.fail_at:
            raise KeyboardInterrupt
        return super().__getitem__(i)


def test_interrupted_extraction_resumes_and_is_never_a_hit(tmp_path, backbone):
    with pytest.raises(KeyboardInterrupt):
        extract_features(FailingImages(fail_at=9, n=10), backbone, tmp_path, batch_size=2, shard_size=4, progress=False)
    (entry,) = tmp_path.iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["key.json", "shard-00000.safetensors", "shard-00001.safetensors"]
    with pytest.raises(DataError, match="incomplete"):
        FeatureCache.load(entry)

    resumed_data = FailingImages(fail_at=None, n=10)
    resumed, hit = extract_features(resumed_data, backbone, tmp_path, batch_size=2, shard_size=4, progress=False)
    assert not hit and resumed_data.reads == 2  # only the last shard (items 8, 9) was computed
    fresh, _ = extract_features(TinyImages(n=10), backbone, tmp_path / "fresh", progress=False)
    torch.testing.assert_close(resumed.features, fresh.features)


def test_corrupt_shard_is_reported(tmp_path, backbone):
    cache, _ = extract_features(TinyImages(n=4), backbone, tmp_path, progress=False)
    shard = cache.path / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last feature value: still a valid safetensors file
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="shard .* does not match the hash in its manifest"):
        extract_features(TinyImages(n=4), backbone, tmp_path, progress=False)
    shard.write_bytes(b"\x00" * 16)
    with pytest.raises(DataError, match="shard .* does not match"):
        extract_features(TinyImages(n=4), backbone, tmp_path, progress=False)


def test_bad_settings_and_mixed_sizes(tmp_path, backbone):
    with pytest.raises(SparsexError, match="unknown feature dtype 'float8'"):
        extract_features(TinyImages(n=2), backbone, tmp_path, dtype="float8")

    class Mixed(TinyImages):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            return {**item, "image": item["image"][:, : 16 + i]} if i else item

    with pytest.raises(DataError, match="different sizes.*image_size"):
        extract_features(Mixed(n=3), backbone, tmp_path, progress=False)
