"""The FunnyBirds protocols by hand on a stub world and model, their pieces, and bad inputs."""

import itertools
import math

import pytest
import torch
from torch import nn

from sparsex.errors import InputError
from sparsex.partworld import (
    CLASS_TABLE,
    NUM_CLASSES,
    THRESHOLDS,
    InterventionCache,
    PartProtocols,
    PartWorld,
    PartWorldConfig,
    contrast_pair,
    evaluate_parts,
    evaluate_parts_model,
    important_parts,
    intervention_key,
    minimal_sufficient_part_sets,
    part_importances,
    spearman,
)


def one_line(error: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(error.value) and str(error.value) != ""


# ---------------------------------------------------------------------------------------------
# A stub part world for hand computation: two images of 2 x 4 pixels. Pixel k (flat, row-major)
# is part slot k for k < 6 and clutter object k - 6 for k = 6, 7; channel 0 is 1 where the
# item is present, channel 1 holds the image index (the stub model reads it to pick its table).
# Masks are one pixel each, so with dilation 1 an importance is the map's value at that pixel.
# ---------------------------------------------------------------------------------------------

LABELS = (0, 4)
CLUTTER = ((True, True), (True, False))  # image 1 has one clutter object


class StubWorld(PartWorld):
    def __init__(self) -> None:  # no PartWorld.__init__: nothing is generated
        self.split = "test"
        self.config = PartWorldConfig(image_size=32, test_size=2, max_clutter=2)
        self.classes = [str(c) for c in range(NUM_CLASSES)]
        self.renders: list[tuple] = []

    def __len__(self) -> int:
        return 2

    def render(self, index, remove_parts=(), remove_background=()):
        self.renders.append((index, tuple(remove_parts), tuple(remove_background)))
        parts = torch.ones(6, dtype=torch.bool)
        parts[list(remove_parts)] = False
        clutter = torch.tensor(CLUTTER[index])
        clutter[list(remove_background)] = False
        presence = torch.cat([parts, clutter]).float().view(2, 4)
        image = torch.stack([presence, torch.full((2, 4), float(index)), torch.zeros(2, 4)])
        pixels = torch.eye(8, dtype=torch.bool).view(8, 2, 4)
        return {"image": image, "label": LABELS[index], "index": index,
                "part_masks": pixels[:6] & parts[:, None, None], "parts_present": parts,
                "background_masks": pixels[6:] & clutter[:, None, None], "background_present": clutter}


# Logits: f_c(x) = bias[i, c] + sum_p W[i, p, c] * presence_p, image i's own table.
# Pixels: beak, eye, crest, wing, tail, feet, clutter 0, clutter 1.
TABLES = {
    0: {0: [4, 4, 3, 2, 0, 3, 0, 4],  # label: 20 on the full image
        2: [0, 0, 0, 0, 1, 1, 0, 0],  # TS class c1 (overlap O1 = {tail, feet})
        3: [1, 1, 1, 0, 0, 0, 0, 0]},  # TS class c2 (overlap O2 = {beak, eye, crest})
    1: {4: [2, 2, 2, 2, 2, 2, -2, 0],  # label: 10
        9: [3, 9, 0, 0, 0, 0, 0, 0],  # the prediction: 12
        0: [0, 0, 0, 0, 0.5, 0, 0, 0]},  # TS class c1: disagrees with the protocol's assumption
}
BIASES = {0: {7: 11.0}, 1: {7: 1.0}}  # a fallback class


class StubModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        weights = torch.zeros(2, 8, NUM_CLASSES)
        bias = torch.zeros(2, NUM_CLASSES)
        for i, table in TABLES.items():
            for c, column in table.items():
                weights[i, :, c] = torch.tensor(column, dtype=torch.float32)
        for i, entries in BIASES.items():
            for c, value in entries.items():
                bias[i, c] = value
        self.register_buffer("weights", weights)
        self.register_buffer("bias", bias)
        self.seen: list[tuple] = []

    def forward(self, x):
        self.seen += [tuple(image.flatten().tolist()) for image in x]
        index = x[:, 1, 0, 0].long()
        return torch.einsum("bp,bpc->bc", x[:, 0].flatten(1), self.weights[index]) + self.bias[index]


# Claimed attributions per (image, target), one value per pixel (same order as the tables).
MAPS = {
    (0, 0): [5, 0, 3, 1, 1, 2, 3, 0],  # total 15
    (0, 2): [0, 0, 0, 0, 2, 1, 0, 0],
    (0, 3): [1, 0, 0, 0, 4, 0, 0, 0],
    (1, 4): [1, 2, 3, 4, 5, 6, 3, 0],  # total 24
    (1, 9): [4, 1, 0, 0, 0, 0, 0, 0],  # total 5
}


def make_explain(maps=MAPS):
    calls = []

    def explain(images, targets):
        pairs = [(int(image[1, 0, 0]), int(t)) for image, t in zip(images, targets)]
        calls.append(pairs)
        return torch.stack([torch.tensor(maps[p], dtype=torch.float32).view(1, 2, 4) for p in pairs])

    return explain, calls


TAUS = [0.1, 0.3]

# Hand computation (dilation 1, tau in {0.1, 0.3}).
#
# Image 0, label 0, predicted 0 (f_0 = 20 > f_7 = 11), 5% of |f_0| = 1.
#   single removals of the label logit: drops beak 4, eye 4, crest 3, wing 2, tail 0, feet 3,
#   clutter 0: 0, clutter 1: 4 -> irrelevant: tail, clutter 0.
#   explanation for 0, total 15: tau .1 (> 1.5): parts {beak, crest, feet}, clutter 0;
#                                tau .3 (> 4.5): {beak}.
#   CSDC: minimal sets of class 0 include {crest, feet} -> 1; with {beak}: {beak, wing} -> 1/2.
#   PC: keep {beak, crest, feet}: f_0 = 20 - 4 - 2 - 0 = 14 > 11 -> 1;
#       keep {beak}: f_0 = 20 - 4 - 3 - 2 - 0 - 3 = 8 < 11 -> 0.
#   DC: remove {beak, crest, feet}: f_0 = 10 < 11 -> 1; remove {beak}: 16 > 11 -> 0.
#   D: tau .1: important ∩ irrelevant = {clutter 0} of 2 -> 1/2; tau .3: none -> 1.
#   SD: importances (5, 0, 3, 1, 1, 2) ranks (6, 1, 5, 2.5, 2.5, 4); drops (4, 4, 3, 2, 0, 3)
#       ranks (5.5, 5.5, 3.5, 2, 1, 3.5); centred products sum to 4, squares to 17 and 16.5:
#       rho = 4 / sqrt(17 * 16.5).
#   TS: pair (c1, c2) = (2, 3), O1 = {tail, feet}, O2 = {beak, eye, crest}. The model agrees:
#       f_2(x \ O1) = 0 < f_2(x \ O2) = 2 and f_3(x \ O2) = 0 < f_3(x \ O1) = 3.
#       imp^2(O1) = 3 > imp^3(O1) = 4? no -> 0; imp^3(O2) = 1 > imp^2(O2) = 0 -> 1.
# Image 1, label 4 (f_4 = 10), predicted 9 (f_9 = 12): not in CSDC.
#   drops of f_4: every part 2 (20%); clutter 0 raises it to 12 -> irrelevant: clutter 0.
#   explanation for 4, total 24: tau .1 (> 2.4): clutter 0 is important -> D 0; tau .3 -> D 1.
#   explanation for 9, total 5: tau .1 (> 0.5): {beak, eye}; tau .3 (> 1.5): {beak}.
#   PC: keep {beak, eye}: f_9 = 12 -> 1; keep {beak}: f_9 = 3 > f_7 = 1 > f_4 = 0 -> 1.
#   DC: remove {beak, eye}: f_9 = 0 < f_4 = 6 -> 1; remove {beak}: f_9 = 9 > f_4 = 8 -> 0.
#   SD: every drop is 2 -> undefined, skipped.
#   TS: pair (0, 1), O1 = {beak, eye}: f_0(x \ O1) = 0.5 < f_0(x \ O2) = 0 fails -> skipped.
# BI: (image 0, clutter 0) drop 0, (image 0, clutter 1) drop 4 relevant, (image 1, clutter 0)
#     raises -> 1 - 1/3.
# Curves: CSDC (1, 1/2), PC (1, 1/2), DC (1, 0), D (1/4, 1);
#   completeness (((1 + 1 + 1) / 3 + 1/4) / 2, ((1/2 + 1/2 + 0) / 3 + 1) / 2) = (5/8, 2/3).
EXPECTED_CURVES = {"tau": TAUS, "csdc": [1.0, 0.5], "pc": [1.0, 0.5], "dc": [1.0, 0.0],
                   "distractibility": [0.25, 1.0], "completeness": [0.625, 2 / 3]}
EXPECTED = {
    "accuracy": 0.5, "abstention": 0.0, "bi": 2 / 3, "csdc": 0.5, "pc": 0.5, "dc": 0.0, "distractibility": 1.0,
    "completeness": 2 / 3, "completeness_tau": 0.3, "correctness": 0.5 + 0.5 * 4 / math.sqrt(17 * 16.5),
    "contrastivity": 0.5, "images": 2, "bi_objects": 3, "csdc_images": 1, "distractibility_images": 2,
    "distractibility_skipped": 0, "correctness_images": 1, "correctness_skipped": 1, "contrastivity_images": 1,
    "contrastivity_skipped_model": 1, "contrastivity_skipped_no_pair": 0,
}


def test_every_protocol_matches_the_hand_computation():
    world, model = StubWorld(), StubModel()
    explain, calls = make_explain()
    result = evaluate_parts(model, world, explain, thresholds=TAUS, dilation=1)
    assert set(result.metrics) == set(EXPECTED)
    for name, value in EXPECTED.items():
        assert result.metrics[name] == pytest.approx(value), name
    assert set(result.curves) == set(EXPECTED_CURVES)
    for name, values in EXPECTED_CURVES.items():
        assert result.curves[name] == pytest.approx(values), name
    # Explanations: labels in one batch, the differing prediction, then the two TS classes.
    assert calls == [[(0, 0), (1, 4)], [(1, 9)], [(0, 2)], [(0, 3)]]
    assert result.to_dict() == {"metrics": result.metrics, "curves": result.curves}


def test_the_model_only_scores_match_the_hand_computation():
    result = evaluate_parts_model(StubModel(), StubWorld())
    assert result.metrics == pytest.approx({"accuracy": 0.5, "abstention": 0.0, "bi": 2 / 3, "images": 2,
                                            "bi_objects": 3})
    assert result.curves == {}


def test_the_metric_class_is_evaluate_parts():
    world, model = StubWorld(), StubModel()
    metric = PartProtocols(thresholds=tuple(TAUS), dilation=1)
    assert metric.higher_is_better
    assert metric(model, world, make_explain()[0]).metrics == pytest.approx(EXPECTED)


def test_the_cache_forwards_each_intervention_once_across_explainers():
    world, model = StubWorld(), StubModel()
    cache = InterventionCache(model, world, internal_batch_size=4)
    assert evaluate_parts_model(model, world, cache=cache).metrics["bi"] == pytest.approx(2 / 3)
    assert cache.forward_passes == len(cache) == 2 + 3  # the images and their clutter removals
    first = evaluate_parts(model, world, make_explain()[0], thresholds=TAUS, dilation=1, cache=cache)
    # 2 images, 15 single removals, 4 TS removals, 2 + 1 new PC / DC removals on image 0 and 2 on
    # image 1 (its DC removals {beak} and {beak, eye} are a single removal and a TS removal).
    assert len(cache) == 26
    uniform = {key: [1.0] * 8 for key in MAPS}
    second = evaluate_parts(model, world, make_explain(uniform)[0], thresholds=TAUS, dilation=1, cache=cache)
    assert first.metrics == pytest.approx(EXPECTED)
    assert second.metrics["bi"] == pytest.approx(2 / 3)
    assert cache.forward_passes == len(cache) == len(model.seen) == len(set(model.seen))
    keys = [intervention_key(i, parts, clutter) for i, parts, clutter in world.renders]
    assert len(set(keys)) == len(cache) and all(key in cache for key in keys)
    assert cache.forward_seconds > 0 and cache.render_seconds > 0
    assert torch.equal(cache.logits(intervention_key(0)), cache.fetch([intervention_key(0)])[0])
    assert cache.logits(intervention_key(0))[0] == 20


# ---------------------------------------------------------------------------------------------
# The pieces, by hand.
# ---------------------------------------------------------------------------------------------


def test_part_importances_dilate_by_a_max_pool_and_keep_the_sign():
    maps = torch.arange(49.0).view(1, 1, 7, 7) - 10  # signed
    masks = torch.zeros(1, 3, 7, 7, dtype=torch.bool)
    masks[0, 0, 3, 3] = True  # 5 x 5 block rows 1..5, cols 1..5: sum (7r + c) = 600, minus 25 * 10
    masks[0, 1, 0, 0] = True  # 3 x 3 corner block: sum (7r + c) = 72, minus 9 * 10
    imp = part_importances(maps, masks)
    assert imp.tolist() == [[350.0, -18.0, 0.0]]
    assert part_importances(maps[:, 0], masks, dilation=1).tolist() == [[14.0, -10.0, 0.0]]
    assert important_parts(imp, torch.tensor([100.0]), torch.tensor([0.0, 0.5, 4.0])).tolist() == [
        [[True, False, False], [True, False, False], [False, False, False]]]


def test_spearman_averages_tied_ranks():
    x = torch.tensor([[1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])
    y = torch.tensor([[1.0, 3.0, 2.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): centred products 4.5, squares 4.5 and 5.
    rho = spearman(x, y)
    assert rho[0].item() == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert rho[1].item() == pytest.approx(-1.0)
    assert math.isnan(rho[2].item())


def test_minimal_sufficient_part_sets_are_sufficient_and_minimal():
    def sufficient(label, slots):
        return all(any(row[k] != CLASS_TABLE[label][k] for k in slots) for c, row in enumerate(CLASS_TABLE) if c != label)

    for label in range(NUM_CLASSES):
        sets = minimal_sufficient_part_sets(label)
        assert sets and all(sufficient(label, s) and not any(sufficient(label, s - {k}) for k in s) for s in sets)
        every = {frozenset(s) for n in range(1, 7) for s in itertools.combinations(range(6), n) if sufficient(label, s)}
        assert all(any(m <= s for m in sets) for s in every)
    assert frozenset({2, 5}) in minimal_sufficient_part_sets(0)


def test_contrast_pairs_follow_the_rule():
    for label in range(NUM_CLASSES):
        c1, c2, o1, o2 = contrast_pair(label)
        for c, o in ((c1, o1), (c2, o2)):
            assert o == {k for k in range(6) if CLASS_TABLE[c][k] == CLASS_TABLE[label][k]}
        assert c1 < c2 and o1 and o2 and not o1 & o2 and label not in (c1, c2)
    assert contrast_pair(0) == (2, 3, frozenset({4, 5}), frozenset({0, 1, 2}))


def test_the_threshold_grid_is_funnybirds():
    assert THRESHOLDS.shape == (80,) and THRESHOLDS[0].item() == pytest.approx(0.01) and THRESHOLDS[-1].item() == 0.5


# ---------------------------------------------------------------------------------------------
# Bad inputs: one-line errors.
# ---------------------------------------------------------------------------------------------


class TooFewClasses(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :3]


@pytest.mark.parametrize("case", ["dataset", "shape", "nan", "index", "cache", "classes", "thresholds", "dilation",
                                  "explain"])
def test_bad_inputs_give_one_line_errors(case):
    world, model = StubWorld(), StubModel()
    explain = make_explain()[0]
    kwargs = {"thresholds": TAUS, "dilation": 1}
    if case == "dataset":
        args = (model, object(), explain)
    elif case == "shape":
        args = (model, world, lambda x, t: torch.zeros(x.shape[0], 2, 2, 4))
    elif case == "nan":
        args = (model, world, lambda x, t: torch.full((x.shape[0], 1, 2, 4), math.nan))
    elif case == "index":
        args, kwargs["indices"] = (model, world, explain), [0, 2]
    elif case == "cache":
        args, kwargs["cache"] = (model, world, explain), InterventionCache(StubModel(), world)
    elif case == "classes":
        args = (TooFewClasses(), world, explain)
    elif case == "thresholds":
        args, kwargs["thresholds"] = (model, world, explain), [[0.1]]
    elif case == "dilation":
        args, kwargs["dilation"] = (model, world, explain), 4
    else:
        args = (model, world, "not callable")
    with pytest.raises(InputError) as error:
        evaluate_parts(*args, **kwargs)
    assert one_line(error)
    if case == "dataset":
        assert "part world" in str(error.value) and "masks" in str(error.value)


def test_bad_pieces_give_one_line_errors():
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    for call in (
        lambda: part_importances(torch.zeros(1, 4, 4), masks.float()),
        lambda: part_importances(torch.zeros(2, 4, 4), masks),
        lambda: part_importances(torch.full((1, 4, 4), math.nan), masks),
        lambda: spearman(torch.zeros(3), torch.zeros(4)),
        lambda: minimal_sufficient_part_sets(NUM_CLASSES),
        lambda: contrast_pair(-1),
        lambda: InterventionCache(StubModel(), StubWorld()).fetch([(0, frozenset({6}), frozenset())]),
        lambda: InterventionCache(StubModel(), StubWorld()).fetch([(5, frozenset(), frozenset())]),
        lambda: InterventionCache(StubModel(), StubWorld(), device="meta"),
        lambda: InterventionCache(StubModel(), StubWorld(), internal_batch_size=0),
        lambda: important_parts(torch.zeros(2, 6), torch.zeros(3), torch.tensor([0.1])),
    ):
        with pytest.raises(InputError) as error:
            call()
        assert one_line(error)
