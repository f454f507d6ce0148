"""The amortised minimal-mask explainer and the per-image baseline on a tiny digits classifier."""

import copy

import pytest
import torch
import torch.nn.functional as F

from sparsex.errors import CheckpointError, InputError, SparsexError
from sparsex.explainers.hooks import default_layers
from sparsex.explainers.minimal_mask import (
    FeatureDecoder,
    MaskNet,
    MaskObjective,
    MaskObjectiveWeights,
    MinimalMask,
    MinimalMaskConfig,
    PerImageMask,
    gradient_map,
    hard_mask,
    nested_top_masks,
    perimage_grid_factor,
    ranked_top_mask,
    straight_through,
    verified_mask,
)
from sparsex.metrics.faithfulness import sufficient
from sparsex.perturb import blur
from sparsex.train.minimal_mask import load_images


@pytest.fixture(scope="module")
def images():
    return load_images("digits", "train", None, {}, 128, progress=False), load_images("digits", "test", None, {}, 32, progress=False)


def test_straight_through_is_binary_forward_and_sigmoid_backward():
    z = torch.tensor([[[[-1.0, 0.5]]]], requires_grad=True)
    m = straight_through(z, hard=True)
    assert m.tolist() == [[[[0.0, 1.0]]]]
    m.sum().backward()
    s = torch.sigmoid(z.detach())
    assert torch.allclose(z.grad, s * (1 - s))


def test_area_budget_keeps_at_most_the_top_fraction_of_positive_logits():
    z = torch.tensor([[[[3.0, -1.0], [2.0, 1.0]]], [[[-1.0, -2.0], [0.5, -3.0]]]])
    assert hard_mask(z).flatten(1).tolist() == [[1, 0, 1, 1], [0, 0, 1, 0]]
    # budget 0.5 of 4 pixels = the 2 highest logits, and only where they are positive
    assert hard_mask(z, 0.5).flatten(1).tolist() == [[1, 0, 1, 0], [0, 0, 1, 0]]
    z.requires_grad_(True)
    straight_through(z, hard=True, area_budget=0.25).sum().backward()
    s = torch.sigmoid(z.detach())
    assert torch.allclose(z.grad, s * (1 - s))
    for bad in (0, 1.5, True, "0.1"):
        with pytest.raises(SparsexError, match="area_budget"):
            MinimalMaskConfig(area_budget=bad)


def test_nested_top_masks_keep_the_highest_scores():
    z = torch.tensor([[[[3.0, 2.0], [1.0, -1.0]]]])
    masks = nested_top_masks(z, [0.25, 0.5, 0.75])
    assert masks.shape == (1, 3, 1, 2, 2)
    assert masks.flatten(2).tolist() == [[[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]]


def test_ranked_top_mask_keeps_each_images_top_fraction_with_a_centred_sigmoid_gradient():
    z = torch.tensor([[[[3.0, 2.0], [1.0, -1.0]]], [[[0.0, 4.0], [2.0, 2.0]]]], requires_grad=True)
    # image 0 keeps floor(0.5 * 4) = 2 pixels (threshold halfway between 2 and 1: 1.5); image 1 keeps
    # floor(0.3 * 4) = 1 (threshold halfway between 4 and 2: 3)
    removed = ranked_top_mask(z, torch.tensor([0.5, 0.3]))
    assert removed.flatten(1).tolist() == [[1, 1, 0, 0], [0, 1, 0, 0]]
    removed.sum().backward()
    s = torch.sigmoid(z.detach() - torch.tensor([1.5, 3.0]).view(2, 1, 1, 1))
    # d/dz_i sum_j sigmoid(z_j - q) = s_i (1 - s_i) - [i at the boundary] / 2 * sum_j s_j (1 - s_j)
    expected = (s * (1 - s)).flatten(1)
    share = expected.sum(1) / 2
    expected[0, 1] -= share[0]  # image 0: q = (z[1] + z[2]) / 2, the 2nd and 3rd highest logits
    expected[0, 2] -= share[0]
    expected[1, 1] -= share[1]  # image 1: q = (z[1] + z[2]) / 2 (4 and the first 2; ties to the lower position)
    expected[1, 2] -= share[1]
    assert torch.allclose(z.grad.flatten(1), expected, atol=1e-6)
    assert torch.allclose(z.grad.sum(dim=(1, 2, 3)), torch.zeros(2), atol=1e-6)  # shifting all logits: no gradient
    # a fraction of 0 still removes one pixel and of 1 keeps one: both ends of the ranking get a gradient
    assert ranked_top_mask(z.detach(), torch.tensor([0.0, 1.0])).flatten(1).sum(1).tolist() == [1, 3]


def test_verified_mask_falls_back_to_the_smallest_sufficient_top_mask():
    # class 0 = 2 p0 + 2 p1, class 1 = 2.5: the image (all ones) is class 0 (4 > 2.5); keeping only
    # p0 gives 2 < 2.5 (label lost), keeping p0 and p1 gives 4 (kept). The fill is zeros.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
        model[1].bias.copy_(torch.tensor([0.0, 2.5]))
    x, fill = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    z = torch.tensor([[[[3.0, 2.0], [1.0, -1.0]]]])
    def masks_and_choices(*args, **kwargs):
        mask, choice = verified_mask(model, *args, **kwargs)
        return mask.flatten().tolist(), choice.tolist()

    assert masks_and_choices(x, z, fill, threshold=2.5) == ([1, 0, 0, 0], [0])  # no fallback: as is (choice: none of 0)
    assert masks_and_choices(x, z, fill, 2.5, [0.25, 0.5, 1.0]) == ([1, 1, 0, 0], [1])  # the 2nd area, 0.5
    assert masks_and_choices(x, z, fill, 2.5, [0.25]) == ([1, 0, 0, 0], [1])  # none keeps: as is
    assert masks_and_choices(x, z, fill, 1.5, [0.25]) == ([1, 1, 0, 0], [-1])  # kept: unchanged
    # a batch mixes kept and fallen-back images; an area budget drops larger fallbacks
    xs, fills, zs = x.repeat(2, 1, 1, 1), fill.repeat(2, 1, 1, 1), torch.cat([z, z.flip(-1)])
    assert verified_mask(model, xs, zs, fills, 2.5, [0.5])[0].flatten(1).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]
    assert verified_mask(model, xs, zs, fills, 2.5, [0.5], area_budget=0.25)[0].flatten(1).tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]
    # areas are tried in order and an image stops at its first success: a 2nd image that needs
    # only 0.5 costs one forward of it, and the areas after 0.5 are never tried
    seen = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(len(inputs[0])))
    assert verified_mask(model, xs, zs, fills, 2.5, [0.25, 0.5, 0.75, 1.0])[0].flatten(1).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]
    assert seen == [4, 2, 2]  # x and e together, then the two lost images at 0.25 and at 0.5
    seen.clear()  # labels known to the caller: the explanations alone are classified, the same masks
    known = verified_mask(model, xs, zs, fills, 2.5, [0.25, 0.5, 0.75, 1.0], labels=torch.zeros(2, dtype=torch.long))
    assert known[0].flatten(1).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]] and seen == [2, 2, 2]
    for bad in ({"readout": "best"}, {"threshold": float("nan")}, {"fallback_areas": [0.2, 0.1]}, {"fallback_areas": [0]}):
        with pytest.raises(SparsexError, match=next(iter(bad))):
            MinimalMaskConfig(**bad)


def test_objective_terms_and_their_weights(digits_classifier, images):
    _, model = digits_classifier
    weights = MaskObjectiveWeights(match=0.0, label=1.0, area=2.0, tv=0.0, binary=4.0, robust=0.0, deletion=0.0, area_target=0.0)
    objective = MaskObjective(model, ["backbone.model.features.0.0"], weights, None)
    x = images[1][:4]
    ref = objective.reference(x)
    full = objective(ref, torch.ones(4, 1, 8, 8))
    # the full mask reproduces x exactly: the classifier's own label, no activation change
    assert full["match"].item() == pytest.approx(0.0, abs=1e-5) and full["kept"].item() == 1.0
    half = objective(ref, torch.full((4, 1, 8, 8), 0.5))
    assert half["area"].item() == pytest.approx(0.5) and half["binary"].item() == pytest.approx(0.25)
    assert half["total"].item() == pytest.approx(half["label"].item() + 2 * 0.5 + 4 * 0.25, rel=1e-5)
    # the deletion term: the label's probability once the top-ranked pixels are blurred away
    deleting = MaskObjective(model, ["backbone.model.features.0.0"], MaskObjectiveWeights(
        match=0.0, label=0.0, area=0.0, tv=0.0, binary=0.0, robust=0.0, deletion=3.0, deletion_area_max=1.0), None)
    z = torch.randn(4, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    terms = deleting(ref, torch.ones(4, 1, 8, 8), torch.Generator().manual_seed(0), mask_logits=z)
    removed = ranked_top_mask(z, torch.rand(4, generator=generator))
    with torch.no_grad():
        expected = model(removed * ref["fill"] + (1 - removed) * x).softmax(1).gather(1, ref["labels"][:, None]).mean()
    assert terms["deletion"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["total"].item() == pytest.approx(3 * expected.item(), rel=1e-5)
    with pytest.raises(SparsexError, match="pass mask_logits"):
        deleting(ref, torch.ones(4, 1, 8, 8))


def test_fit_shrinks_the_mask_and_gives_binary_masks(digits_classifier, images):
    _, model = digits_classifier
    train, test = images
    config = MinimalMaskConfig(epochs=2, width=4, batch_size=32, soft_epochs=2, weights={"area": 4.0, "area_target": 0.0},
                               readout="threshold")
    explainer = MinimalMask(model, config, in_chans=1)
    history = explainer.fit(train, progress=False)
    assert len(history) == 2 and history[-1]["area"] < history[0]["area"]
    masks = explainer.attribute(test)
    assert masks.shape == (32, 1, 8, 8) and set(masks.unique().tolist()) <= {0.0, 1.0}
    soft = explainer.attribute(test, binary=False)
    assert torch.equal((soft > 0.5).float(), masks)
    assert torch.equal((explainer.mask_logits(test) > 0).float(), masks)  # the ranking the mask thresholds
    # the verified readout changes only masks that lost the label, and keeps it at least as often
    explainer.config.readout = "verified"
    verified = explainer.attribute(test)
    kept = {name: sufficient(model, test, m) for name, m in (("threshold", masks), ("verified", verified))}
    assert torch.equal(verified[kept["threshold"]], masks[kept["threshold"]])
    assert (kept["verified"] | ~kept["threshold"]).all() and kept["verified"].sum() >= kept["threshold"].sum()
    assert explainer.attribute(test, target=model(test).argmax(1)).shape == masks.shape
    # threshold calibration: the smallest masks among the thresholds within the tolerance of the best sufficiency
    chosen = explainer.calibrate_threshold(train[:32], thresholds=(-1.0, 0.0, 1.0), tolerance=0.0)
    table = chosen["table"]
    assert [row["threshold"] for row in table] == [-1.0, 0.0, 1.0] and explainer.config.threshold == chosen["threshold"]
    best = max(row["sufficiency"] for row in table)
    assert chosen["threshold"] == min((r for r in table if r["sufficiency"] >= best), key=lambda r: r["area"])["threshold"]
    assert all(0 <= r["area"] <= 1 and 0 <= r["sufficiency"] <= 1 for r in table)
    with pytest.raises(InputError, match="tolerance must be a finite number in"):
        explainer.calibrate_threshold(train[:4], tolerance=2)


def test_pruning_the_fallback_areas_changes_only_the_masks_the_dropped_areas_rescued(digits_classifier, images):
    _, model = digits_classifier
    train, test = images
    areas = [0.02, 0.05, 0.1, 0.2, 0.4, 0.6]
    explainer = MinimalMask(model, MinimalMaskConfig(epochs=1, width=4, threshold=2.0, fallback_areas=areas), in_chans=1)
    explainer.fit(train[:64], progress=False)
    with torch.no_grad():
        logits = explainer.net(test)
    before, choice = verified_mask(model, test, logits, blur(test), 2.0, areas)
    assert torch.equal(before, explainer.attribute(test))
    counts = [int((choice == i).sum()) for i in range(len(areas))]
    assert explainer.prune_fallback_areas(test, min_rescue=0.0) == {
        "fallback_areas": areas, "rescued": [{"area": a, "images": n} for a, n in zip(areas, counts)],
        "unrescued": int((choice == len(areas)).sum())}
    bar = 0.1
    pruned = explainer.prune_fallback_areas(test, min_rescue=bar)
    kept = [a for a, n in zip(areas, counts) if n >= bar * len(test)]
    assert pruned["fallback_areas"] == kept + ([areas[-1]] if areas[-1] not in kept else [])  # the largest always stays
    assert explainer.config.fallback_areas == pruned["fallback_areas"] and kept != areas  # something was dropped
    after = explainer.attribute(test)
    unchanged = (choice == -1) | (choice == len(areas)) | torch.isin(choice, torch.tensor(
        [i for i, a in enumerate(areas) if a in pruned["fallback_areas"]]))
    assert torch.equal(after[unchanged], before[unchanged])
    assert explainer.prune_fallback_areas(test, min_rescue=1.0)["fallback_areas"] == [areas[-1]]
    with pytest.raises(InputError, match="min_rescue must be a finite number in"):
        explainer.prune_fallback_areas(test, min_rescue=2)


def test_save_load_round_trip_and_classifier_pairing(digits_classifier, images, tmp_path):
    _, model = digits_classifier
    explainer = MinimalMask(model, MinimalMaskConfig(epochs=1, width=4), in_chans=1)
    explainer.fit(images[0][:64], progress=False)
    explainer.save(tmp_path / "mm")
    loaded = MinimalMask.load(tmp_path / "mm", model)
    assert torch.equal(loaded.attribute(images[1]), explainer.attribute(images[1]))
    assert loaded.image_size == (8, 8)
    other = type(model)(model.backbone, type(model.head)(64, 10))  # the same architecture, other weights
    with pytest.raises(CheckpointError, match="trained for another classifier"):
        MinimalMask.load(tmp_path / "mm", other)


def test_bad_input(digits_classifier, images):
    _, model = digits_classifier
    explainer = MinimalMask(model, MinimalMaskConfig(epochs=1, width=4), in_chans=1)
    explainer.fit(images[0][:32], progress=False)
    x = images[1][:4]
    with pytest.raises(InputError, match="this explainer was trained on 8x8 images"):
        explainer.attribute(torch.rand(2, 1, 16, 16))
    with pytest.raises(InputError, match="NaN"):
        explainer.attribute(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(InputError, match="target class 12 is out of range: the model has 10 classes"):
        explainer.attribute(x, target=12)
    wrong = (model(x).argmax(1) + 1) % 10
    with pytest.raises(InputError, match="explain the classifier's predicted class"):
        explainer.attribute(x, target=wrong)
    with pytest.raises(InputError, match="model has no layer 'nope'"):
        MinimalMask(model, MinimalMaskConfig(layers=["nope"]))
    with pytest.raises(SparsexError, match="weight area must be a finite number >= 0"):
        MinimalMaskConfig(weights={"area": -1})
    with pytest.raises(SparsexError, match="unknown mask objective setting"):
        MinimalMaskConfig(weights={"aera": 1})


def test_per_image_baseline(digits_classifier, images):
    _, model = digits_classifier
    masks = PerImageMask(model, steps=6, downsample=2, internal_batch_size=2).attribute(images[1][:3])
    assert masks.shape == (3, 1, 8, 8) and set(masks.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(SparsexError, match="steps must be a positive integer"):
        PerImageMask(model, steps=0)
    with pytest.raises(SparsexError, match="downsample must be a positive integer or None"):
        PerImageMask(model, downsample=0)


def test_per_image_grid_is_about_32_cells_along_the_shorter_side(digits_classifier, images, monkeypatch):
    assert [perimage_grid_factor(s, s) for s in (8, 28, 63, 64, 128, 224)] == [1, 1, 1, 2, 4, 7]
    assert perimage_grid_factor(64, 200) == 2
    _, model = digits_classifier
    grids = []
    real_interpolate = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda t, **kw: grids.append(tuple(t.shape[-2:])) or real_interpolate(t, **kw))
    PerImageMask(model, steps=1, internal_batch_size=2).attribute(images[1][:2])
    assert grids[0] == (8, 8)  # 8 x 8 digits: the full resolution


def test_default_layers_are_the_feature_extractors_and_silent_layers_are_named():
    """A prototype head applies its convolutions functionally: the default matched layers come from
    the backbone, and a named layer that never runs is a one-line error naming candidates."""
    from sparsex.backbones import create_backbone
    from sparsex.explainers.hooks import default_layers
    from sparsex.models import create_model
    from sparsex.models.classifier import PrototypeClassifier

    backbone = create_backbone("small-cnn", image_size=8, in_chans=3, width=4, seed=0)
    head = create_model("side", in_channels=backbone.info.channels, num_classes=3, expanded_channels=4)
    model = PrototypeClassifier(backbone, head, ["a", "b", "c"]).eval().requires_grad_(False)
    layers = default_layers(model)
    assert layers and all(name.startswith("backbone.") for name in layers)
    x = torch.rand(2, 3, 8, 8)
    assert MaskObjective(model, layers, MaskObjectiveWeights(), None).reference(x)["acts"].keys() == set(layers)
    silent = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and n.startswith("head.")]
    assert silent
    with pytest.raises(InputError, match=f"layer '{silent[0]}' never runs as a module.*name layers that run, e.g. backbone"):
        MaskObjective(model, silent[:1], MaskObjectiveWeights(), None).reference(x)


def test_feature_decoder_reads_the_frozen_classifiers_activations(digits_classifier, images):
    _, model = digits_classifier
    train, test = images
    config = MinimalMaskConfig(architecture="feature-decoder", epochs=1, width=8, readout="threshold")
    explainer = MinimalMask(model, config, in_chans=1)
    assert isinstance(explainer.net, FeatureDecoder) and config.decoder_layers == config.layers == default_layers(model)
    # only the decoder has parameters: the classifier is read, not owned
    assert not set(map(id, model.parameters())) & set(map(id, explainer.net.parameters()))
    assert not any(name.startswith("classifier") for name in explainer.net.state_dict())
    assert len(explainer.net.project) == 3
    logits = explainer.net(test[:4])
    assert logits.shape == (4, 1, 8, 8)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in explainer.net.out.parameters())
    assert all(p.grad is not None for p in explainer.net.project.parameters())
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    # the mask depends on the classifier's activations: other classifier weights, other masks
    other = copy.deepcopy(model)
    with torch.no_grad():
        before = explainer.net(test[:4])
        other.backbone.model.features[0][0].weight.mul_(-1)
        explainer.net.classifier = (other,)
        after = explainer.net(test[:4])
    explainer.net.classifier = (model,)
    assert not torch.allclose(before, after)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    explainer.fit(train[:64], progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # the classifier stays frozen
    masks = explainer.attribute(test)
    assert masks.shape == (32, 1, 8, 8) and set(masks.unique().tolist()) <= {0.0, 1.0}
    # the verified readout reuses the labels of the decoder's own classifier forward: one forward
    # of x and one of the explanations, the masks of the readout that classifies both again
    explainer.config.readout, explainer.config.fallback_areas = "verified", [0.1, 0.3]
    calls = []
    handle = model.register_forward_pre_hook(lambda module, inputs: calls.append(len(inputs[0])))
    verified = explainer.attribute(test)
    handle.remove()
    assert calls[:2] == [32, 32]
    with torch.no_grad():
        again = verified_mask(model, test, explainer.net(test), blur(test), config.threshold, [0.1, 0.3])[0]
    assert torch.equal(verified, again)
    # named layers: only those are read
    one = MinimalMask(model, MinimalMaskConfig(architecture="feature-decoder", decoder_layers=config.layers[-1:], width=4),
                      in_chans=1)
    assert one.config.decoder_layers == config.layers[-1:] and len(one.net.project) == 1
    assert one.net(test[:2]).shape == (2, 1, 8, 8)


def test_feature_decoder_objective_decreases_on_digits(digits_classifier, images):
    _, model = digits_classifier
    train, _ = images
    config = MinimalMaskConfig(architecture="feature-decoder", epochs=4, width=8, soft_epochs=4, lr=5e-3)
    explainer = MinimalMask(model, config, in_chans=1)
    history = explainer.fit(train, progress=False)
    assert history[-1]["total"] < 0.8 * history[0]["total"]
    assert history[-1]["mask_area"] < history[0]["mask_area"]


def test_feature_decoder_save_load_round_trip(digits_classifier, images, tmp_path):
    _, model = digits_classifier
    config = MinimalMaskConfig(architecture="feature-decoder", epochs=1, width=4, threshold=0.5)
    explainer = MinimalMask(model, config, in_chans=1)
    explainer.fit(images[0][:64], progress=False)
    explainer.save(tmp_path / "decoder")
    loaded = MinimalMask.load(tmp_path / "decoder", model)
    assert isinstance(loaded.net, FeatureDecoder) and loaded.config.architecture == "feature-decoder"
    assert loaded.config.decoder_layers == explainer.config.decoder_layers
    assert torch.equal(loaded.mask_logits(images[1]), explainer.mask_logits(images[1]))
    assert torch.equal(loaded.attribute(images[1]), explainer.attribute(images[1]))
    # a U-Net checkpoint stays a U-Net
    unet = MinimalMask(model, MinimalMaskConfig(epochs=1, width=4), in_chans=1)
    unet.image_size = (8, 8)
    unet.save(tmp_path / "unet")
    assert isinstance(MinimalMask.load(tmp_path / "unet", model).net, MaskNet)


def test_feature_decoder_bad_settings(digits_classifier):
    _, model = digits_classifier
    with pytest.raises(SparsexError, match="architecture must be one of unet, feature-decoder, got 'resnet'"):
        MinimalMaskConfig(architecture="resnet")
    with pytest.raises(SparsexError, match="decoder_layers must be a non-empty list of layer names or None"):
        MinimalMaskConfig(architecture="feature-decoder", decoder_layers=[])
    with pytest.raises(InputError, match="model has no layer 'nope'"):
        MinimalMask(model, MinimalMaskConfig(architecture="feature-decoder", decoder_layers=["nope"]))
    # a layer that exists but never runs as a module: named at construction
    silent = torch.nn.Conv2d(1, 1, 1)
    model.add_module("unused", silent)
    try:
        with pytest.raises(InputError, match="layer 'unused' never runs as a module"):
            MinimalMask(model, MinimalMaskConfig(architecture="feature-decoder", decoder_layers=["unused"]))
        with pytest.raises(InputError, match=r"the feature decoder reads \(B, C, h, w\) maps; layer 'head' gives \(1, 10\)"):
            MinimalMask(model, MinimalMaskConfig(architecture="feature-decoder", decoder_layers=["head"]))
    finally:
        del model.unused


def test_gradient_map_by_hand():
    # two channels: sum_c grad_c (x_c - fill_c), then divided by the image's largest |value|
    grad = torch.tensor([[[[1.0, 2.0]], [[0.5, -1.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])
    x = torch.tensor([[[[1.0, 0.5]], [[1.0, 1.0]]], [[[1.0, 1.0]], [[1.0, 1.0]]]])
    fill = torch.tensor([[[[0.0, 0.5]], [[0.0, 0.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])
    # image 0: pixel 0: 1*1 + 0.5*1 = 1.5; pixel 1: 2*0 + (-1)*1 = -1; max |.| 1.5
    assert torch.allclose(gradient_map(grad, x, fill), torch.tensor([[[[1.0, -1 / 1.5]]], [[[0.0, 0.0]]]]))


def test_feature_decoder_reads_the_gradient_map(digits_classifier, images, tmp_path):
    _, model = digits_classifier
    train, test = images
    config = MinimalMaskConfig(architecture="feature-decoder", decoder_gradient=True, epochs=1, width=4, readout="threshold")
    explainer = MinimalMask(model, config, in_chans=1)
    net = explainer.net
    assert net.gradient and net.image[0].in_channels == 2
    # the map the decoder reads: the predicted logit's gradient x (image - blurred image), by autograd here
    x = test[:4].clone().requires_grad_()
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), x)
    expected = gradient_map(grad, test[:4], blur(test[:4]))
    with torch.no_grad():  # the explainer runs without gradients; the decoder takes its backward all the same
        maps, output, pixels = net._activations(test[:4])
        assert torch.allclose(pixels, expected) and torch.equal(output, logits.detach())
        # the mask depends on that map: a decoder whose image block ignores it gives other logits
        before = net(test[:4])
        net.image[0].weight[:, 1] = 0
        assert not torch.allclose(before, net(test[:4]))
    explainer = MinimalMask(model, config, in_chans=1)
    explainer.fit(train[:64], progress=False)
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())  # the classifier stays frozen
    assert explainer.attribute(test).shape == (32, 1, 8, 8)
    explainer.save(tmp_path / "gradient")
    loaded = MinimalMask.load(tmp_path / "gradient", model)
    assert loaded.config.decoder_gradient and loaded.net.gradient
    assert torch.equal(loaded.mask_logits(test), explainer.mask_logits(test))
    with pytest.raises(SparsexError, match="decoder_gradient is an input of the feature decoder: set architecture"):
        MinimalMaskConfig(decoder_gradient=True)
    with pytest.raises(SparsexError, match="decoder_gradient must be true or false, got 'yes'"):
        MinimalMaskConfig(architecture="feature-decoder", decoder_gradient="yes")
