"""ProtoS-ViT trained end to end on a tiny part world (small-cnn features, and a random ViT)."""

import json
import shutil

import pytest
import torch

from sparsex.errors import SparsexError
from sparsex.models import load_model
from sparsex.train.protosvit import ProtoSViTTrainConfig, protosvit_loss, train_protosvit
from sparsex.train.run import RunFolder

TINY = dict(data="parts", data_options={"image_size": 48, "train_size": 48, "test_size": 24}, backbone="small-cnn",
            num_prototypes=12, embed_dim=8, epochs=3, hoyer_warmup_epochs=1, batch_size=16, gallery_k=2)


@pytest.fixture(scope="module")
def protosvit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("protosvit") / "run"
    config = ProtoSViTTrainConfig(**TINY, cache_dir=str(out.parent / "features"))
    return out, config, train_protosvit(config, out, progress=False)


def test_run_folder_and_metrics(protosvit_run):
    out, config, final = protosvit_run
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["1-train", "2-prune"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["train", "prune"] and metrics["final"] == final
    for key in ["accuracy", "local_size", "local_size_all", "global_size", "zero_weight_fraction"]:
        assert key in final
    assert 0 <= final["pruned_connections"] <= 12 * 24 and final["global_size"] <= 12
    assert (out / "checkpoint" / "gallery.safetensors").is_file() and (out / "stages.md").is_file()
    head, checkpoint = load_model(out / "checkpoint", family="protosvit")
    assert checkpoint.config["model"]["num_prototypes"] == 12 and head.class_weights().min() >= 0


def test_rerun_resumes_after_the_last_finished_stage(protosvit_run, tmp_path):
    out, config, final = protosvit_run
    assert train_protosvit(config, out, progress=False) == final
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)  # as if killed during the prune stage
    for lost in ["stages/2-prune", "checkpoint"]:
        shutil.rmtree(resumed / lost)
    assert train_protosvit(config, resumed, progress=False) == final


def test_loss_terms_and_hoyer_ramp():
    from sparsex.models import create_model

    torch.manual_seed(0)
    head = create_model("protosvit", in_channels=4, num_classes=2, num_prototypes=3, embed_dim=4)
    out = head(torch.randn(5, 4, 2, 2))
    y = torch.tensor([0, 1, 0, 1, 1])
    ce = torch.nn.functional.cross_entropy(out.logits, y)
    only_ce = ProtoSViTTrainConfig(tanh_weight=0.0, hoyer_weight=0.0)
    assert protosvit_loss(head, only_ce)(out, y, 0.0).item() == pytest.approx(ce.item())
    ramped = ProtoSViTTrainConfig(tanh_weight=0.0, hoyer_weight=2.0, hoyer_warmup_epochs=4)
    importances = out.scores * head.class_weights()[y]
    hs = (importances.sum(1) ** 2 / (importances.square().sum(1) + 1e-12)).mean()
    assert protosvit_loss(head, ramped)(out, y, 0.0).item() == pytest.approx(ce.item())  # not ramped in yet
    assert protosvit_loss(head, ramped)(out, y, 1.0).item() == pytest.approx((ce + 0.25 * 2.0 * hs).item(), rel=1e-5)
    assert protosvit_loss(head, ramped)(out, y, 9.0).item() == pytest.approx((ce + 2.0 * hs).item(), rel=1e-5)


def test_vit_backbone_path(tmp_path):
    """A random-weight timm ViT: tokens become a grid, the class token is dropped, training runs."""
    config = ProtoSViTTrainConfig(data="parts", data_options={"image_size": 32, "train_size": 24, "test_size": 12},
                                  backbone="vit_tiny_patch16_224", pretrained=False, image_size=32, num_prototypes=6,
                                  embed_dim=8, epochs=1, batch_size=8, gallery_k=1, cache_dir=str(tmp_path / "f"))
    final = train_protosvit(config, tmp_path / "run", progress=False)
    head, checkpoint = load_model(tmp_path / "run" / "checkpoint", family="protosvit")
    assert checkpoint.config["model"]["in_channels"] == 192 and "accuracy" in final
    cache = next((tmp_path / "f").rglob("*.safetensors"))
    from safetensors import safe_open

    with safe_open(str(cache), framework="pt") as f:
        assert f.get_tensor("features").shape[1:] == (192, 2, 2)  # 32 px / patch 16, no class token


def test_prune_fraction_floors_the_pruning_at_a_share_of_the_training_logits(protosvit_run, tmp_path):
    """The prune stage again on the same trained model, with ``prune_fraction`` 0.6: the floor is 0.6
    x the median true-class logit of the training images, and every surviving connection's largest
    training importance is above it."""
    from sparsex.backbones import create_backbone
    from sparsex.train.heads import cached_split
    from sparsex.train.loop import predict

    out, config, final = protosvit_run
    config = ProtoSViTTrainConfig(**{**TINY, "prune_fraction": 0.6}, cache_dir=config.cache_dir)
    run = tmp_path / "floored"
    RunFolder(run, config.to_dict(), list(config.stages))
    shutil.copytree(out / "stages" / "1-train", run / "stages" / "1-train")
    floored = train_protosvit(config, run, progress=False)
    trained, _ = load_model(out / "stages" / "1-train", family="protosvit")
    train = cached_split(config, "train", create_backbone(**config.backbone_settings()), config.cache_dir, progress=False)
    predicted = predict(trained.eval(), train.features, keys=("scores", "logits"))
    floor = 0.6 * predicted["logits"].gather(1, train.labels.long()[:, None]).median().item()
    assert floored["prune_floor"] == pytest.approx(floor, rel=1e-5) and floor > 0
    head, _ = load_model(run / "checkpoint", family="protosvit")
    largest = head.class_weights() * predicted["scores"].amax(0)[None]
    assert (largest[head.connections > 0] > floor).all()
    assert floored["global_size"] <= final["global_size"] and floored["pruned_connections"] > final["pruned_connections"]


@pytest.mark.parametrize("kw, pattern", [
    (dict(stages=("train", "polish")), "unknown ProtoS-ViT stage 'polish'"),
    (dict(prune_fraction=1.5), "prune_fraction"),
    (dict(hoyer_weight=-1.0), "hoyer_weight must be a finite number >= 0"),
    (dict(epochs=-1), "epochs must be a non-negative integer"),
    (dict(num_prototypes=0), "num_prototypes must be a positive integer"),
    (dict(weight_init=None), "unknown ProtoS-ViT weight_init None; valid: vote, official"),
])
def test_bad_config(kw, pattern):
    with pytest.raises(SparsexError, match=pattern):
        ProtoSViTTrainConfig(**kw)


def test_unknown_setting_is_named():
    with pytest.raises(SparsexError, match="unknown ProtoS-ViT setting.*prune_k"):
        ProtoSViTTrainConfig.from_dict({"prune_k": 3})


def test_preset_loss_weights():
    sparsex = ProtoSViTTrainConfig()
    assert (sparsex.preset, sparsex.tanh_weight, sparsex.hoyer_weight, sparsex.hoyer_l2_weight) == ("sparsex", 0.0, 0.01, 0.0)
    official = ProtoSViTTrainConfig(preset="official")
    assert (official.tanh_weight, official.hoyer_weight, official.hoyer_l2_weight) == (1.0, 0.01, 0.01)
    assert ProtoSViTTrainConfig(preset="official", tanh_weight=0.0).tanh_weight == 0.0  # set values win
    assert official.model_settings()["preset"] == "official"
    with pytest.raises(SparsexError, match="unknown ProtoS-ViT preset 'paper'; valid presets: sparsex, official"):
        ProtoSViTTrainConfig(preset="paper")


def test_official_loss_terms():
    from sparsex.models import create_model

    torch.manual_seed(0)
    head = create_model("protosvit", in_channels=4, num_classes=2, num_prototypes=3, embed_dim=4, preset="official")
    out = head(torch.randn(5, 4, 2, 2))
    y = torch.tensor([0, 1, 0, 1, 1])
    ce = torch.nn.functional.cross_entropy(out.logits, y)
    # tanh on the similarities of all 5 x 4 patches; Hoyer-Square over all K P importances / sqrt(K P) + L2
    presence = -torch.log(torch.tanh(out.similarities.sum(dim=(0, 2, 3))) + 1e-20).mean()
    importances = (out.scores[:, None, :] * head.class_weights()[None]).flatten(1)
    hs = importances.sum(1) ** 2 / importances.square().sum(1) / 6**0.5
    sparsity = (0.01 * hs + 0.01 * importances.norm(dim=1)).mean()
    config = ProtoSViTTrainConfig(preset="official", hoyer_warmup_epochs=4)
    loss = protosvit_loss(head, config)
    assert loss(out, y, 0.0).item() == pytest.approx((ce + presence).item(), rel=1e-5)
    assert loss(out, y, 2.0).item() == pytest.approx((ce + presence + 0.5 * sparsity).item(), rel=1e-5)


def test_official_preset_trains_and_reloads(tmp_path):
    config = ProtoSViTTrainConfig(**{**TINY, "epochs": 1}, preset="official", cache_dir=str(tmp_path / "features"))
    final = train_protosvit(config, tmp_path / "run", progress=False)
    head, checkpoint = load_model(tmp_path / "run" / "checkpoint", family="protosvit")
    assert checkpoint.config["model"]["preset"] == "official" and head.config.preset == "official"
    assert hasattr(head, "project_out") and 0 <= head.class_weights().min() and head.class_weights().max() <= 5
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"] == final
