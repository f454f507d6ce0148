"""InfoDisent, SIDE's dense baseline, trained end to end on a tiny part world (small-cnn features)."""

import pytest
import torch

from sparsex.errors import SparsexError
from sparsex.models import load_model
from sparsex.train.infodisent import InfoDisentTrainConfig, train_infodisent

TINY = dict(data="parts", data_options={"image_size": 48, "train_size": 48, "test_size": 24}, backbone="small-cnn",
            expanded_channels=6, epochs=3, batch_size=16, gallery_k=2)


def test_one_stage_unpruned_softmax_head(tmp_path):
    config = InfoDisentTrainConfig(**TINY, cache_dir=str(tmp_path / "features"))
    final = train_infodisent(config, tmp_path / "dense", progress=False)
    assert sorted(p.name for p in (tmp_path / "dense" / "stages").iterdir()) == ["1-train"]
    head, checkpoint = load_model(tmp_path / "dense" / "checkpoint", family="infodisent")
    assert checkpoint.config["model"]["name"] == "infodisent" and head.config.variant == "infodisent"
    assert final["global_size"] == 12  # unpruned: every prototype is used
    assert final["zero_weight_fraction"] < 0.1
    assert torch.allclose(head.probabilities(torch.zeros(1, 24)).sum(), torch.tensor(1.0))


@pytest.mark.parametrize("settings, pattern", [
    ({"epochs": -1}, "epochs must be a non-negative integer"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"prune_k": 3}, "unknown InfoDisent setting.*prune_k"),
])
def test_bad_settings(settings, pattern):
    with pytest.raises(SparsexError, match=pattern):
        InfoDisentTrainConfig.from_dict({**TINY, **settings})
