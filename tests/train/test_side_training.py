"""SIDE trained end to end on a tiny part world (small-cnn features)."""

import json
import shutil

import pytest
import torch

from sparsex.errors import OutputExistsError, SparsexError
from sparsex.models import load_model
from sparsex.train.side import SIDETrainConfig, train_side

TINY = dict(data="parts", data_options={"image_size": 48, "train_size": 48, "val_size": 24, "test_size": 24}, backbone="small-cnn",
            expanded_channels=6, pretrain_epochs=3, finetune_epochs=2, calibrate_epochs=2,
            prune_k=2, batch_size=16, gallery_k=2)


@pytest.fixture(scope="module")
def side_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("side") / "run"
    config = SIDETrainConfig(**TINY, cache_dir=str(out.parent / "features"))
    return out, config, train_side(config, out, progress=False)


def test_side_run_folder_and_metrics(side_run):
    out, config, final = side_run
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["1-pretrain", "2-prune", "3-finetune", "4-calibrate", "5-offset"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == list(config.stages) and metrics["final"] == final
    for key in ["accuracy", "local_size", "local_size_all", "global_size", "ocla_score", "classes_above_t_histogram",
                "zero_weight_fraction"]:
        assert key in final
    pruned = metrics["stages"][1]
    assert pruned["zero_weight_fraction"] >= 1 - 2 / 12  # A=2 of P=12 weights per class survive
    assert final["local_size"] <= 2  # at most A prototypes can contribute to the predicted class
    assert sum(final["classes_above_t_histogram"]) == 24
    assert (out / "stages.md").read_text().count("\n") == 2 + 5
    assert (out / "checkpoint" / "gallery.safetensors").is_file()


def test_final_checkpoint_reloads_with_its_mask(side_run):
    out, _, _ = side_run
    head, checkpoint = load_model(out / "checkpoint", family="side")
    assert checkpoint.config["data"]["name"] == "parts" and checkpoint.config["backbone"]["name"] == "small-cnn"
    assert (head.class_weights() > 0).sum(1).le(2).all()


def test_rerun_resumes_and_kill_mid_run_gives_the_same_result(side_run, tmp_path):
    out, config, final = side_run
    before = (out / "stages" / "5-offset" / "model.safetensors").stat().st_mtime_ns
    assert train_side(config, out, progress=False) == final  # nothing left to train
    assert (out / "stages" / "5-offset" / "model.safetensors").stat().st_mtime_ns == before

    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)  # as if killed during stage 3: stages 3-5 and the final checkpoint lost
    for lost in ["stages/3-finetune", "stages/4-calibrate", "stages/5-offset", "checkpoint"]:
        shutil.rmtree(resumed / lost)
    assert train_side(config, resumed, progress=False) == final


def test_offset_stage_shifts_only_the_biases_by_the_val_splits_best_shift(side_run):
    from sparsex.backbones import create_backbone
    from sparsex.data import create_dataset
    from sparsex.metrics import ocla_score
    from sparsex.metrics.prototype import ocla_shift

    out, config, _ = side_run
    stages = {m["stage"]: m for m in json.loads((out / "metrics.json").read_text())["stages"]}
    calibrated, _ = load_model(out / "stages" / "4-calibrate")
    shifted, _ = load_model(out / "stages" / "5-offset")
    # the shift the stage recorded is ocla_shift on the val split's logits of the calibrated head
    val = create_dataset("parts", split="val", **config.data_options)
    backbone = create_backbone(**config.backbone_settings())
    with torch.no_grad():
        logits = calibrated(backbone.extract(torch.stack([val[i]["image"] for i in range(len(val))]))).logits
    labels = torch.tensor([val[i]["label"] for i in range(len(val))])
    shift, score = ocla_shift(logits, labels)
    record = stages["offset"]
    assert record["offset"] == pytest.approx(shift, abs=1e-5) and record["val_ocla"] == pytest.approx(score)
    assert record["val_ocla_before_offset"] == pytest.approx(ocla_score(torch.sigmoid(logits), labels))
    assert record["val_ocla"] >= record["val_ocla_before_offset"]
    # only the biases moved, all by the shift: the predictions and every explanation size stay
    for name, value in calibrated.state_dict().items():
        expected = value + shift if name == "bias" else value
        assert torch.allclose(shifted.state_dict()[name], expected, atol=1e-6), name
    for key in ("accuracy", "local_size", "local_size_all", "global_size"):
        assert record[key] == stages["calibrate"][key], key


@pytest.mark.parametrize("data, reason", [
    (dict(data="digits", image_size=8), "has no split 'val'"),
    (dict(data="parts", data_options={"image_size": 48, "train_size": 48, "val_size": 0, "test_size": 24}),
     "has no images in split 'val'"),
])
def test_offset_stage_is_skipped_with_a_warning_where_the_data_has_no_val_split(tmp_path, data, reason):
    config = SIDETrainConfig(**data, backbone="small-cnn", expanded_channels=4, pretrain_epochs=1,
                             stages=("pretrain", "offset"), batch_size=64, gallery_k=1, cache_dir=str(tmp_path / "features"))
    with pytest.warns(UserWarning, match=f"offset stage skipped.*{reason}"):
        train_side(config, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())["stages"][-1]
    assert record["offset"] == 0.0 and reason in record["offset_skipped"]


def test_other_settings_in_the_same_folder(side_run):
    out, config, _ = side_run
    with pytest.raises(OutputExistsError, match="prune_k"):
        train_side(SIDETrainConfig(**{**TINY, "prune_k": 3}, cache_dir=config.cache_dir), out, progress=False)


@pytest.mark.parametrize("settings, pattern", [
    ({"stages": ("pretrain", "polish")}, "unknown SIDE stage 'polish'; valid stages"),
    ({"prune_k": 13}, r"prune_k A=13 exceeds the number of prototypes \(12"),
    ({"ocla_lambda": -1.0}, "ocla_lambda must be a finite number >= 0"),
    ({"hoyer_weight": float("nan")}, "hoyer_weight must be a finite number >= 0, got nan"),
    ({"ocla_threshold": 0.9, "ocla_margin": 0.2}, r"ocla_margin must be between 0 and min\(t, 1 - t\)"),
    ({"variant": "infodisent"}, "unknown SIDE setting.*variant"),
    ({"pretrain_loss": "mse"}, "pretrain_loss must be 'asl' or 'bce'"),
    ({"offset_split": ""}, "offset_split must name a data split"),
])
def test_bad_settings(settings, pattern):
    with pytest.raises(SparsexError, match=pattern):
        SIDETrainConfig.from_dict({**TINY, **settings})


def test_unknown_setting_name():
    with pytest.raises(SparsexError, match="unknown SIDE setting.*epochs_pretrain"):
        SIDETrainConfig.from_dict({"epochs_pretrain": 3})


@pytest.mark.parametrize("stage", ["finetune", "calibrate"])
def test_presence_sparsity_enters_finetune_and_calibrate(stage):
    from sparsex.losses import asymmetric_loss, class_importance_hoyer_loss, ocla_loss
    from sparsex.models.side import SIDEConfig, SIDEHead
    from sparsex.train.side import _stage_loss

    torch.manual_seed(0)
    head = SIDEHead(SIDEConfig(in_channels=4, num_classes=3, expanded_channels=5))
    out, y = head(torch.randn(6, 4, 3, 3)), torch.tensor([0, 1, 2, 0, 1, 2])
    base = asymmetric_loss(out.logits, y, 1.0, 4.0, 0.05)
    if stage == "calibrate":
        base = base + ocla_loss(out.logits, y, 0.5, 200.0, margin=SIDETrainConfig().ocla_margin)
    sparsity = class_importance_hoyer_loss(out.scores, head.class_weights(), y)
    with_term = _stage_loss(SIDETrainConfig(**TINY, hoyer_weight=0.5), stage, head)(out, y, 0.0)
    without = _stage_loss(SIDETrainConfig(**TINY, hoyer_weight=0.0), stage, head)(out, y, 0.0)
    assert without.item() == pytest.approx(base.item(), rel=1e-6)
    assert with_term.item() == pytest.approx((base + 0.5 * sparsity).item(), rel=1e-6)


def test_run_loads_as_an_image_classifier_with_its_prototype_evidence(side_run):
    from sparsex import create_explainer
    from sparsex.data import create_dataset
    from sparsex.models.classifier import PrototypeClassifier, load_image_classifier

    out, config, final = side_run
    model, checkpoint = load_image_classifier(out)
    assert isinstance(model, PrototypeClassifier) and checkpoint.config["data"]["name"] == "parts"
    test = create_dataset("parts", split="test", **config.data_options)
    images = torch.stack([test[i]["image"] for i in range(4)])
    head, _ = load_model(out / "checkpoint")
    with torch.no_grad():
        out_head = head(model.backbone.extract(images))
    assert torch.allclose(model(images), out_head.logits)
    maps = create_explainer("prototypes", model).attribute(images)
    assert maps.shape == (4, 1, 48, 48) and (maps >= 0).all()
    # the evidence of the predicted class: contributing prototypes' s_p W[c, p] times their upsampled maps
    c = out_head.logits.argmax(dim=1)
    coefficients = out_head.scores * head.class_weights()[c]
    assert (maps.flatten(1).sum(1) > 0).tolist() == (coefficients > 1e-3).any(dim=1).tolist()
