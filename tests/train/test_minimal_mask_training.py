"""Training the amortised minimal-mask explainer: a staged run that resumes, calibrates and explains files."""

import json
import shutil

import pytest
import torch

from sparsex.errors import SparsexError
from sparsex.explainers.minimal_mask import MinimalMaskConfig, explain_file, load_explainer_classifier
from sparsex.train.minimal_mask import MinimalMaskTrainConfig, train_minimal_mask


def test_run_resumes_and_explains_a_file(digits_classifier, tmp_path):
    from PIL import Image

    classifier, _ = digits_classifier
    config = MinimalMaskTrainConfig.from_dict({"model": str(classifier), "train_limit": 128, "test_limit": 32,
                                               "explainer": {"epochs": 2, "width": 4}})
    final = train_minimal_mask(config, tmp_path / "explainer", progress=False)
    assert final["stage"] == "calibrate" and 0 <= final["mask_area"] <= 1 and 0 <= final["sufficiency"] <= 1
    again = train_minimal_mask(config, tmp_path / "explainer", progress=False)  # finished: nothing is retrained
    assert again == final
    # killed before the calibrate stage: the restart calibrates the last epoch's explainer the same way
    shutil.rmtree(tmp_path / "explainer" / "stages" / "3-calibrate")
    assert train_minimal_mask(config, tmp_path / "explainer", progress=False) == final
    loaded, _ = load_explainer_classifier(tmp_path / "explainer")
    assert loaded.config.threshold == final["threshold"] and loaded.config.fallback_areas == final["fallback_areas"]
    # the pruned areas: those that rescued at least 1% of the 128 calibration images (2 images), and the largest
    areas = MinimalMaskConfig().fallback_areas
    assert [row["area"] for row in final["rescued"]] == areas
    assert final["fallback_areas"] == [row["area"] for row in final["rescued"] if row["images"] >= 1.28 or row["area"] == areas[-1]]
    # calibrate=0: the epochs alone, the given threshold kept
    plain = MinimalMaskTrainConfig.from_dict({"model": str(classifier), "train_limit": 128, "test_limit": 32,
                                              "explainer": {"epochs": 1, "width": 4, "calibrate": 0, "threshold": 0.5}})
    assert train_minimal_mask(plain, tmp_path / "plain", progress=False)["stage"] == "epoch-1"
    assert load_explainer_classifier(tmp_path / "plain")[0].config.threshold == 0.5
    Image.fromarray((torch.rand(20, 20) * 255).byte().numpy()).save(tmp_path / "digit.png")
    out = explain_file(tmp_path / "explainer", tmp_path / "digit.png", tmp_path / "explained")
    result = json.loads((out / "explanation.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["explanation.json", "explanation.png", "image.png", "mask.png"]
    assert 0 <= result["mask_area"] <= 1 and len(result["prediction_on_image"]) == 3
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(SparsexError, match="cannot read image"):
        explain_file(tmp_path / "explainer", tmp_path / "bad.png", tmp_path / "explained2")
    assert not (tmp_path / "explained2").exists()


@pytest.mark.parametrize("gradient", [False, True])
def test_feature_decoder_run_records_and_reloads_its_architecture(digits_classifier, tmp_path, gradient):
    from sparsex.explainers.minimal_mask import FeatureDecoder

    classifier, _ = digits_classifier
    config = MinimalMaskTrainConfig.from_dict({"model": str(classifier), "train_limit": 64, "test_limit": 16,
                                               "explainer": {"architecture": "feature-decoder", "epochs": 1, "width": 4,
                                                             "calibrate": 16, "decoder_gradient": gradient}})
    final = train_minimal_mask(config, tmp_path / "decoder", progress=False)
    assert final["stage"] == "calibrate" and 0 <= final["mask_area"] <= 1
    loaded, model = load_explainer_classifier(tmp_path / "decoder")
    assert loaded.config.architecture == "feature-decoder" and isinstance(loaded.net, FeatureDecoder)
    assert loaded.config.decoder_gradient is gradient and loaded.net.gradient is gradient
    assert loaded.net.classifier[0] is model and loaded.config.decoder_layers == loaded.config.layers
    images = torch.rand(3, 1, 8, 8)
    assert loaded.attribute(images).shape == (3, 1, 8, 8)
    with pytest.raises(SparsexError, match="architecture must be one of unet, feature-decoder"):
        MinimalMaskTrainConfig.from_dict({"model": str(classifier), "explainer": {"architecture": "vit"}})
