"""The plain classifier: end to end (small CNN) and as a linear probe on cached features."""

import json

import pytest
import torch

from sparsex.errors import CheckpointError, SparsexError
from sparsex.models.classifier import ImageClassifier, load_classifier
from sparsex.train.classifier import ClassifierTrainConfig, train_classifier

DIGITS = dict(data="digits", backbone="small-cnn", image_size=8, epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "run"
    return out, train_classifier(ClassifierTrainConfig(**DIGITS), out, progress=False)


def test_end_to_end_run_learns_and_checkpoints_every_epoch(digits_run):
    out, final = digits_run
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["1-epoch-1", "2-epoch-2"]
    assert final["stage"] == "epoch-2" and final["test_accuracy"] > 0.5  # chance is 0.1
    assert final["test_abstention"] == 0.0  # a trained CNN's logits never all tie
    model, checkpoint = load_classifier(out)
    assert isinstance(model, ImageClassifier) and checkpoint.config["mode"] == "end-to-end"
    assert model.classes == [str(i) for i in range(10)] and model.num_classes == 10
    assert not any(p.requires_grad for p in model.parameters())
    from sparsex import create_dataset

    test = create_dataset("digits", split="test")
    x = torch.stack([test[i]["image"] for i in range(len(test))])
    y = torch.tensor([test[i]["label"] for i in range(len(test))])
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(final["test_accuracy"], abs=1e-6)  # the checkpoint is the measured model


def test_resume_after_a_lost_epoch_gives_the_same_weights(digits_run, tmp_path):
    import shutil

    out, _ = digits_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "stages" / "2-epoch-2")
    shutil.rmtree(copy / "checkpoint")
    final = train_classifier(ClassifierTrainConfig(**DIGITS), copy, progress=False)
    assert final["test_accuracy"] == json.loads((out / "metrics.json").read_text())["final"]["test_accuracy"]
    a, _ = load_classifier(out)
    b, _ = load_classifier(copy)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_probe_mode_trains_on_cached_features(tmp_path):
    config = ClassifierTrainConfig(data="parts", data_options={"image_size": 32, "train_size": 48, "test_size": 24},
                                   backbone="small-cnn", image_size=32, mode="probe", epochs=2)
    final = train_classifier(config, tmp_path / "probe", progress=False)
    assert final["stage"] == "train" and 0 <= final["test_accuracy"] <= 1
    assert (tmp_path / "probe" / "features").is_dir()
    model, checkpoint = load_classifier(tmp_path / "probe" / "checkpoint")
    assert checkpoint.config["mode"] == "probe" and model.num_classes == 24


@pytest.mark.parametrize("settings, pattern", [
    ({"mode": "finetune"}, "unknown classifier mode 'finetune'; valid: probe, end-to-end"),
    ({"epochs": -1}, "epochs must be a positive integer"),
    ({"lr": 0}, r"lr must be a finite number in \(0, 10\)"),
])
def test_bad_settings(settings, pattern):
    with pytest.raises(SparsexError, match=pattern):
        ClassifierTrainConfig(**{**DIGITS, **settings})


def test_loading_another_family_is_refused(tmp_path):
    from sparsex.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(1)}, "side", {"model": {}})
    with pytest.raises(CheckpointError, match="holds a 'side' model, not a 'classifier' model"):
        load_classifier(tmp_path / "ck")
