"""VSC trained end to end on the 8x8 digits: run folder, resume, the alignment loss, bad settings."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sparsex.errors import DataError, SparsexError
from sparsex.models import load_model
from sparsex.train.vsc import VSCTrainConfig, train_vsc, vsc_loss

TINY = dict(data="digits", latent_dim=8, hidden_dim=32, epochs=2, batch_size=40, warmup_epochs=1, lambda_jsd=10.0,
            probe_max_iter=50)


@pytest.fixture(scope="module")
def vsc_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vsc") / "run"
    config = VSCTrainConfig(**TINY)
    return out, config, train_vsc(config, out, progress=False)


def test_run_folder_and_metrics(vsc_run):
    out, config, final = vsc_run
    assert [p.name for p in (out / "stages").iterdir()] == ["2-epoch2"]  # only the newest epoch is kept
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["epoch1", "epoch2"] and metrics["final"] == final
    for key in ["bce", "bce_code", "kl", "active_dims", "jsd_within", "probe_accuracy", "train_loss", "train_jsd"]:
        assert isinstance(final[key], float), key
    assert 0 <= final["active_dims"] <= 8 and 0 <= final["probe_accuracy"] <= 1
    assert len(final["correlation_matrix"]) == 10 and final["classes"][3] == "3"
    assert final["dims_global"] + final["dims_class_specific"] + final["dims_unused"] == 8
    model, checkpoint = load_model(out / "checkpoint", family="vsc")
    assert model.latent_dim == 8 and model.image_size == (8, 8) and checkpoint.config["training"]["lambda_jsd"] == 10.0
    assert json.loads((out / "config.json").read_text()) == config.to_dict()
    assert any(k.startswith("optimizer.") for k in load_file(out / "stages" / "2-epoch2" / "model.safetensors"))


def test_rerun_and_resume_give_the_same_model(vsc_run, tmp_path):
    out, config, final = vsc_run
    assert train_vsc(config, out, progress=False) == final  # finished: nothing retrained
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)  # as if killed during epoch 2: only epoch 1's checkpoint there
    shutil.rmtree(resumed / "stages" / "2-epoch2")
    shutil.rmtree(resumed / "checkpoint")
    first = tmp_path / "first"  # a 1-epoch run has the same first epoch (batches and noise from seed and epoch)
    train_vsc(VSCTrainConfig(**{**TINY, "epochs": 1}), first, progress=False)
    shutil.copytree(first / "stages" / "1-epoch1", resumed / "stages" / "1-epoch1")
    assert train_vsc(config, resumed, progress=False) == final
    a, b = load_file(out / "checkpoint" / "model.safetensors"), load_file(resumed / "checkpoint" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_alignment_loss_term_and_plain_vsc():
    from sparsex.models import create_model

    torch.manual_seed(0)
    model = create_model("vsc", image_size=8, latent_dim=4, hidden_dim=8)
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    generator = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    aligned, parts = vsc_loss(model, x, y, VSCTrainConfig(lambda_jsd=2.0), 50.0, generator())
    plain, plain_parts = vsc_loss(model, x, y, VSCTrainConfig(lambda_jsd=0.0), 50.0, generator())
    assert parts == plain_parts and parts["jsd"] > 0  # the JSD is measured for plain VSC too, not trained
    assert aligned.item() == pytest.approx(plain.item() + 2.0 * parts["jsd"], rel=1e-5)


def test_spike_scale_warm_up():
    config = VSCTrainConfig(spike_scale_start=50, spike_scale_end=200, warmup_epochs=5)
    assert [config.spike_scale(e) for e in (0, 2.5, 5, 9)] == [50, 125, 200, 200]
    assert VSCTrainConfig(warmup_epochs=0).spike_scale(0) == 200


@pytest.mark.parametrize("settings, pattern", [
    ({"lambda_jsd": -0.5}, r"lambda_jsd \(0 is plain VSC\) must be a finite number >= 0, got -0.5"),
    ({"alpha": 1.5}, r"alpha .* must be a finite number in \(0, 1\)"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"arch": "rnn"}, "unknown VSC architecture 'rnn'"),
])
def test_bad_settings(settings, pattern):
    with pytest.raises(SparsexError, match=pattern):
        VSCTrainConfig(**settings)
    with pytest.raises(SparsexError, match="unknown VSC setting.*lamda"):
        VSCTrainConfig.from_dict({"lamda": 1})


def test_bad_data(tmp_path):
    with pytest.raises(DataError, match=r"batch size 12 is too small to hold same-class pairs of 10 classes: need at least 20"):
        train_vsc(VSCTrainConfig(**{**TINY, "batch_size": 12}), tmp_path / "small", progress=False)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        train_vsc(VSCTrainConfig(data="fashion-mnist", root=str(tmp_path)), tmp_path / "fm", progress=False)
    assert not (tmp_path / "small").exists() and not (tmp_path / "fm").exists()  # nothing written on bad input
