import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import sparsex
from sparsex.backbones import create_backbone
from sparsex.checkpoint import save_checkpoint
from sparsex.errors import DataError, InputError, OutputExistsError
from sparsex.explainers import PrototypeExplainer, explain_checkpoint
from sparsex.explainers import prototypes as explainer_module
from sparsex.models import create_model
from sparsex.models.gallery import build_gallery, load_gallery
from sparsex.viz import crop_patch, explanation_figure, gallery_patches


def tiny_head(in_channels: int, num_classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("side", in_channels=in_channels, num_classes=num_classes, expanded_channels=4).eval()


def one_line(error: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(error.value) and str(error.value) != ""


class PoolBackbone(nn.Module):
    """Stands in for a backbone: features are the image average-pooled by ``stride`` (C = 3)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, self.stride)


@pytest.fixture(scope="module")
def cnn():
    return create_backbone("small-cnn", image_size=32)  # (B, 64, 8, 8) features, 1 input channel


# ---------------------------------------------------------------------------------------------
# Explanations.


def test_contributions_add_up_to_the_logit(cnn):
    head = tiny_head(64, num_classes=5)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = head(cnn.extract(image[None]))
    c = int(out.logits[0].argmax())
    contributions = out.scores[0] * head.class_weights()[c].detach()
    eps = float(contributions.median())  # about half the prototypes fall below it
    expl = PrototypeExplainer(head, cnn).explain(image, top_classes=2, eps=eps)
    assert expl.target == c and [p.label for p in expl.predictions][0] == c and len(expl.predictions) >= 2
    expected = sorted((p for p in range(8) if contributions[p] > eps), key=lambda p: -float(contributions[p]))
    assert [p.prototype for p in expl.prototypes] == expected and 0 < len(expected) < 8
    listed = sum(p.contribution for p in expl.prototypes)
    below = float(contributions[contributions <= eps].sum())
    assert listed == pytest.approx(float(out.logits[0, c]) - float(head.bias.detach()[c]) - below, abs=1e-5)
    assert expl.bias == pytest.approx(float(head.bias.detach()[c]), abs=1e-5)
    for p in expl.prototypes:
        assert p.contribution == pytest.approx(p.score * p.weight, rel=1e-5)
        assert p.map.shape == (8, 8) and p.heatmap.shape == (32, 32)
    probs = torch.sigmoid(out.logits[0])
    assert expl.predictions[0].probability == pytest.approx(float(probs[c]))
    assert {p.label for p in expl.predictions} >= {k for k in range(5) if probs[k] > 0.5}  # sigmoid: all above 0.5
    other = (c + 1) % 5
    assert PrototypeExplainer(head, cnn).explain(image, target=other).target == other


def bright_square_image() -> torch.Tensor:
    image = torch.zeros(3, 32, 32)
    image[:, 8:16, 16:24] = 1.0  # exactly feature cell (1, 2) of a stride-8 grid
    return image


def pool_head() -> nn.Module:
    head = tiny_head(3, num_classes=3)
    with torch.no_grad():
        head.expand.bias.zero_()  # maps are zero except in the bright cell
        head.weight.fill_(1.0)
    return head


def test_heat_map_peaks_where_the_prototype_fires():
    expl = PrototypeExplainer(pool_head(), PoolBackbone(8)).explain(bright_square_image())
    assert expl.feature_size == (4, 4) and expl.prototypes
    for p in expl.prototypes:
        assert p.feature_location == (1, 2) and p.location == (12.0, 20.0)
        y, x = divmod(int(p.heatmap.argmax()), 32)
        assert 8 <= y < 16 and 16 <= x < 24


def test_attribute_shapes_targets_and_agreement_with_explain(cnn):
    head = tiny_head(64, num_classes=5)
    explainer = PrototypeExplainer(head, cnn)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    maps = explainer.attribute(images)
    assert maps.shape == (3, 1, 32, 32) and maps.device == images.device
    with torch.no_grad():
        predicted = head(cnn.extract(images)).logits.argmax(dim=1)
    assert torch.equal(maps, explainer.attribute(images, target=predicted))
    assert torch.equal(maps, explainer.attribute(images, target=predicted.tolist()))
    assert torch.equal(explainer.attribute(images, target=np.int64(1)), explainer.attribute(images, target=[1, 1, 1]))
    per_class = explainer.attribute(images, target=2)
    expl = explainer.explain(images[1], target=2)
    expected = sum(p.contribution * p.heatmap for p in expl.prototypes)
    torch.testing.assert_close(per_class[1, 0], expected, atol=1e-5, rtol=1e-4)

    square = PrototypeExplainer(pool_head(), PoolBackbone(8)).attribute(bright_square_image()[None])
    y, x = divmod(int(square.argmax()), 32)
    assert 8 <= y < 16 and 16 <= x < 24


def test_bad_inputs_give_one_line_errors(cnn):
    explainer = PrototypeExplainer(tiny_head(64, num_classes=5), cnn)
    nan = torch.rand(3, 32, 32)
    nan[0, 0, 0] = float("nan")
    for bad in (torch.rand(2, 3, 32, 32), torch.rand(32, 32), nan):
        with pytest.raises(InputError) as e:
            explainer.explain(bad)
        assert one_line(e)
    for target in (5, -1, [0, 1, 2], [0, 7], torch.tensor([0.5, 1.0])):
        with pytest.raises(InputError) as e:
            explainer.attribute(torch.rand(2, 3, 32, 32), target=target)
        assert one_line(e)
    with pytest.raises(InputError):
        explainer.attribute(torch.rand(3, 32, 32))
    for kwargs in ({"top_classes": 0}, {"target": 5}, {"target": True}):
        with pytest.raises(InputError) as e:
            explainer.explain(torch.rand(3, 32, 32), **kwargs)
        assert one_line(e)


# ---------------------------------------------------------------------------------------------
# Patches and the figure.


def test_crop_patch_centres_the_cell_and_fills_outside_grey():
    image = torch.zeros(3, 64, 64)
    image[:, 16:24, 32:40] = 1.0  # cell (2, 4) of an 8x8 grid (stride 8)
    patch = crop_patch(image, (2, 4), (8, 8), patch_scale=2.0, size=16)  # window 16 px -> no resampling
    assert patch.shape == (3, 16, 16) and patch[:, 4:12, 4:12].eq(1).all() and patch[:, :4].eq(0).all()
    corner = crop_patch(image, (0, 0), (8, 8), patch_scale=2.0, size=16)
    assert corner[:, :4, :].eq(0.5).all() and corner[:, :, :4].eq(0.5).all() and corner[:, 4:, 4:].eq(0).all()
    grey = crop_patch(torch.ones(1, 64, 64), (3, 3), (8, 8))
    assert grey.shape == (3, 64, 64)


@pytest.fixture(scope="module")
def parts():
    return sparsex.create_dataset("parts", split="train", image_size=64, train_size=24)


def test_figure_is_written_with_gallery_patches(tmp_path, parts, cnn):
    head = tiny_head(64, num_classes=24)
    feats = torch.cat([cnn.extract(parts[i]["image"][None]) for i in range(len(parts))])
    gallery = build_gallery(head, feats, k=3)
    image = parts[5]["image"]
    expl = PrototypeExplainer(head, cnn).explain(image)
    assert expl.image_size == (64, 64) and expl.prototypes
    shown = [p.prototype for p in expl.prototypes[:10]]
    patches = gallery_patches(gallery, parts, shown, size=32)
    assert patches.shape == (len(shown), 3, 3, 32, 32)
    out = explanation_figure(expl, image, gallery=gallery, gallery_patches=patches, class_names=parts.classes,
                             out=tmp_path / "fig" / "explanation.png")
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] > 400 and png.size[1] > 300 * min(2, len(shown))
    assert sorted(p.name for p in out.parent.iterdir()) == ["explanation.png"]  # no temporary left behind
    with pytest.raises(InputError):
        explanation_figure(expl, torch.rand(3, 32, 32), out=tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------------
# End to end.


def write_run(tmp_path: Path, parts, cnn) -> Path:
    head = tiny_head(64, num_classes=24)
    config = {
        "model": {"name": "side", "in_channels": 64, "num_classes": 24, "expanded_channels": 4},
        "backbone": {"name": "small-cnn", "pretrained": False, "weights": None, "layer": None, "image_size": 32},
        "data": {"name": "parts", "root": None, "options": {"image_size": 64, "train_size": 24}, "classes": parts.classes},
        "cache_dir": str(tmp_path / "features"),
    }
    save_checkpoint(tmp_path / "run" / "checkpoint", head, "side", config)
    return tmp_path / "run"


def test_explain_checkpoint_end_to_end(tmp_path, parts, cnn, monkeypatch):
    run = write_run(tmp_path, parts, cnn)
    query = tmp_path / "query.png"
    Image.fromarray((parts[7]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(query)

    out = explain_checkpoint(run, query, tmp_path / "out", k=3, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["explanation.json", "explanation.png"]
    report = json.loads((out / "explanation.json").read_text())
    assert report["image_size"] == [32, 32] and report["k"] == 3  # resized to the backbone's input
    assert report["predictions"][0]["class"] == parts.classes[report["predictions"][0]["label"]]
    assert report["num_contributing"] == len(report["prototypes"]) > 0
    for p in report["prototypes"]:
        assert p["contribution"] == pytest.approx(p["score"] * p["weight"], rel=1e-5)
        assert len(p["gallery"]) == 3 and all(0 <= g["index"] < 24 for g in p["gallery"])
    gallery_file = run / "checkpoint" / "gallery.safetensors"
    assert gallery_file.is_file() and load_gallery(run / "checkpoint").k == 3

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached gallery should have been reused")

    with monkeypatch.context() as m:
        m.setattr(explainer_module, "build_gallery", no_rebuild)
        explain_checkpoint(run / "checkpoint", query, tmp_path / "out2", k=2, progress=False)  # the folder itself
    assert len(json.loads((tmp_path / "out2" / "explanation.json").read_text())["prototypes"][0]["gallery"]) == 2

    with pytest.raises(OutputExistsError):
        explain_checkpoint(run, query, out, k=3, progress=False)
    explain_checkpoint(run, query, out, k=5, overwrite=True, progress=False)  # more than cached: rebuilt
    assert load_gallery(run / "checkpoint").k == 5

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    for bad in (tmp_path / "missing.png", not_an_image):
        with pytest.raises(DataError) as e:
            explain_checkpoint(run, bad, tmp_path / "never", progress=False)
        assert one_line(e)
    with pytest.raises(InputError):
        explain_checkpoint(run, query, tmp_path / "never", k=0, progress=False)
    assert not (tmp_path / "never").exists()
