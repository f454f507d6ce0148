"""The protocols on part worlds with other class tables than the default one: hand-built tables
with absent slots (minimal sufficient sets, contrast pairs, the protocols on a stub world), and a
tiny ``parts-fine`` world end to end."""

import math

import pytest
import torch
from torch import nn

from sparsex.data import create_dataset
from sparsex.errors import InputError
from sparsex.partworld import (
    CLASS_TABLE,
    NUM_CLASSES,
    InterventionCache,
    PartOracle,
    PartWorld,
    PartWorldConfig,
    contrast_pair,
    evaluate_parts,
    evaluate_parts_model,
    minimal_sufficient_part_sets,
    oracle_explanation,
)
from sparsex.partworld.classes import ABSENT

A = ABSENT
# Slots: beak 0, eye 1, crest 2, wing 3, tail 4, feet 5.
T1 = (
    (0, 0, 0, 0, 0, 0),
    (0, 0, 0, 0, 0, 1),  # class 0 but for the feet
    (1, 1, A, 0, 0, A),  # no crest, no feet
    (0, 1, A, 1, 1, A),  # no crest, no feet
)
T2 = (
    (0, 0, 0, A, A, A),  # class 1 has all of its parts (and a wing): no sufficient set
    (0, 0, 0, 1, A, A),
    (1, 1, 1, 1, 1, 1),
)


def sets(*slots):
    return tuple(frozenset(s) for s in slots)


def test_minimal_sufficient_sets_of_hand_built_tables():
    # Class 0: class 1 differs only in the feet -> {feet} (and it hits classes 2 and 3 too).
    assert minimal_sufficient_part_sets(0, T1) == sets({5})
    assert minimal_sufficient_part_sets(1, T1) == sets({5})
    # Class 2 has slots {0, 1, 3, 4}: classes 0 and 1 differ on {0, 1}, class 3 on {0, 3, 4}
    # (crest and feet, absent in class 2, are never its evidence, although classes 0, 1 have them).
    assert minimal_sufficient_part_sets(2, T1) == sets({0}, {1, 3}, {1, 4})
    # Class 3 has slots {0, 1, 3, 4}: classes 0 and 1 differ on {1, 3, 4}, class 2 on {0, 3, 4}.
    assert minimal_sufficient_part_sets(3, T1) == sets({3}, {4}, {0, 1})
    # T2: class 0's parts all match class 1's -> no sufficient set. Class 1: class 0 lacks the
    # wing (differs on {3}), class 2 differs on {0, 1, 2}. Class 2: class 0 lacks wing, tail and
    # feet, so each of them tells it from class 0; class 1 differs on {0, 1, 2, 4, 5}.
    assert minimal_sufficient_part_sets(0, T2) == ()
    assert minimal_sufficient_part_sets(1, T2) == sets({0, 3}, {1, 3}, {2, 3})
    assert minimal_sufficient_part_sets(2, T2) == sets({0}, {1}, {2}, {4}, {5})
    # A table may be any sequence of rows.
    assert minimal_sufficient_part_sets(2, [list(row) for row in T1]) == sets({0}, {1, 3}, {1, 4})


def test_contrast_pairs_of_hand_built_tables():
    # Overlaps count only slots both classes have: classes 2 and 3 both lack crest and feet but
    # share only the eye.
    assert contrast_pair(0, T1) == (2, 3, frozenset({3, 4}), frozenset({0}))
    assert contrast_pair(1, T1) == (2, 3, frozenset({3, 4}), frozenset({0}))
    assert contrast_pair(2, T1) == (0, 3, frozenset({3, 4}), frozenset({1}))
    assert contrast_pair(3, T1) == (0, 2, frozenset({0}), frozenset({1}))
    assert contrast_pair(0, T2) is None  # class 2 shares nothing with class 0
    assert contrast_pair(1, T2) == (0, 2, frozenset({0, 1, 2}), frozenset({3}))
    assert contrast_pair(2, T2) is None


def test_the_default_table_is_the_default_argument():
    for label in range(NUM_CLASSES):
        assert minimal_sufficient_part_sets(label) == minimal_sufficient_part_sets(label, CLASS_TABLE)
        assert minimal_sufficient_part_sets(label) == minimal_sufficient_part_sets(label, [list(r) for r in CLASS_TABLE])
        assert contrast_pair(label) == contrast_pair(label, CLASS_TABLE)


def test_fine_table_sets_and_pairs_use_only_the_slots_a_class_has():
    table = PartWorldConfig.from_dict({"preset": "parts-fine"}).class_table
    for label, row in enumerate(table):
        present = {k for k in range(6) if row[k] != ABSENT}
        ms = minimal_sufficient_part_sets(label, table)
        assert all(s <= present for s in ms)
        for s in ms:  # sufficient: every other class lacks or differs on a slot of s
            assert all(any(other[k] != row[k] for k in s) for c, other in enumerate(table) if c != label)
        c1, c2, o1, o2 = contrast_pair(label, table)
        for c, o in ((c1, o1), (c2, o2)):
            assert o == {k for k in present if table[c][k] == row[k]}
        assert o1 and o2 and not o1 & o2


@pytest.mark.parametrize("call", [
    lambda: minimal_sufficient_part_sets(4, T1),
    lambda: contrast_pair(-1, T2),
    lambda: minimal_sufficient_part_sets(0, ((0, 0, 0),) * 3),
    lambda: contrast_pair(0, ((0, 0, 0, 0, 0, -2), (1,) * 6)),
    lambda: contrast_pair(0, ((0.5,) * 6, (1,) * 6)),
    lambda: minimal_sufficient_part_sets(0, 3),
    lambda: minimal_sufficient_part_sets(0, (T1[0],)),
])
def test_bad_tables_and_labels_give_one_line_errors(call):
    with pytest.raises(InputError) as error:
        call()
    assert "\n" not in str(error.value) and str(error.value)


# ---------------------------------------------------------------------------------------------
# The protocols on a stub world with table T2: two images of 2 x 4 pixels as in test_protocols
# (pixel k is part slot k for k < 6, clutter object k - 6 for k = 6, 7; channel 0 is 1 where the
# item is present, channel 1 the image index). Image 0 is of class 0 (slots 0-2 drawn), image 1
# of class 1 (slots 0-3 drawn); no clutter object is present.
# ---------------------------------------------------------------------------------------------


class T2Config(PartWorldConfig):
    @property
    def class_table(self):
        return T2


class T2World(PartWorld):
    LABELS = (0, 1)

    def __init__(self) -> None:  # no PartWorld.__init__: nothing is generated
        self.split = "test"
        self.config = T2Config(image_size=32, test_size=2, max_clutter=2)
        self.classes = ["a", "b", "c"]

    def __len__(self) -> int:
        return 2

    def render(self, index, remove_parts=(), remove_background=()):
        label = self.LABELS[index]
        parts = torch.tensor([v != ABSENT for v in T2[label]])
        parts[list(remove_parts)] = False
        clutter = torch.zeros(2, dtype=torch.bool)
        presence = torch.cat([parts, clutter]).float().view(2, 4)
        image = torch.stack([presence, torch.full((2, 4), float(index)), torch.zeros(2, 4)])
        pixels = torch.eye(8, dtype=torch.bool).view(8, 2, 4)
        return {"image": image, "label": label, "index": index,
                "part_masks": pixels[:6] & parts[:, None, None], "parts_present": parts,
                "background_masks": pixels[6:] & clutter[:, None, None], "background_present": clutter}


class T2Model(nn.Module):
    """f_0 = 0.5 + beak + eye + crest, f_1 = beak + eye + crest + 2 wing, f_2 = 3 wing."""

    def __init__(self) -> None:
        super().__init__()
        weights = torch.zeros(8, 3)
        weights[:3, 0] = weights[:3, 1] = 1.0
        weights[3, 1], weights[3, 2] = 2.0, 3.0
        self.register_buffer("weights", weights)
        self.register_buffer("bias", torch.tensor([0.5, 0.0, 0.0]))

    def forward(self, x):
        return x[:, 0].flatten(1) @ self.weights + self.bias


T2_MAPS = {
    (0, 0): [1, 1, 1, 0, 0, 0, 0, 0],
    (1, 1): [1, 0, 0, 4, 0, 0, 0, 0],  # total 5
    (1, 0): [1, 1, 1, 0, 0, 0, 0, 0],
    (1, 2): [0, 0, 0, 3, 0, 0, 0, 0],
}


def test_the_protocols_on_a_stub_world_with_absent_slots():
    # Image 0: f = (3.5, 3, 0) -> class 0, correct, but class 0 has no sufficient set: not in CSDC;
    #   no contrast pair: not in TS.
    # Image 1: f = (3.5, 5, 3) -> class 1, correct. CSDC: MS = {0,3}, {1,3}, {2,3}; tau .1 (> 0.5):
    #   I = {beak, wing} -> 1; tau .3 (> 1.5): I = {wing} -> 1/2. TS: pair (0, 2), O1 = {0, 1, 2},
    #   O2 = {3}: f_0(x \ O1) = 0.5 < f_0(x \ O2) = 3.5, f_2(x \ O2) = 0 < f_2(x \ O1) = 3 -> scored;
    #   imp^0(O1) = 3 > imp^2(O1) = 0 and imp^2(O2) = 3 > imp^0(O2) = 0 -> 1, 1.
    calls = []

    def explain(images, targets):
        pairs = [(int(image[1, 0, 0]), int(t)) for image, t in zip(images, targets)]
        calls.append(pairs)
        return torch.stack([torch.tensor(T2_MAPS[p], dtype=torch.float32).view(1, 2, 4) for p in pairs])

    world, model = T2World(), T2Model()
    result = evaluate_parts(model, world, explain, thresholds=[0.1, 0.3], dilation=1)
    m = result.metrics
    assert result.curves["csdc"] == pytest.approx([1.0, 0.5])
    assert m["accuracy"] == 1.0 and m["images"] == 2 and m["csdc_images"] == 1
    assert m["contrastivity"] == 1.0 and m["contrastivity_images"] == 1
    assert m["contrastivity_skipped_model"] == 0 and m["contrastivity_skipped_no_pair"] == 1
    assert m["bi_objects"] == 0 and math.isnan(m["bi"])
    assert calls == [[(0, 0), (1, 1)], [(1, 0)], [(1, 2)]]


def test_a_model_must_have_the_worlds_number_of_classes():
    class FourClasses(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :4]

    with pytest.raises(InputError, match="the part world's 3 classes, got logits of shape") as error:
        evaluate_parts_model(FourClasses(), T2World())
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------
# A tiny parts-fine world end to end.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fine_world():
    return create_dataset("parts", split="test", preset="parts-fine", image_size=32, train_size=4, test_size=4)


def test_the_protocols_run_on_a_tiny_parts_fine_world(fine_world):
    world = fine_world
    classes = len(world.config.class_table)
    assert classes == world.config.classes == 120 and world.config.class_table != CLASS_TABLE
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, classes))
    oracle = PartOracle(table=world.config.class_table)

    def gradient_times_input(model):
        def explain(x, t):
            x = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(model(x).gather(1, t[:, None]).sum(), x)
            return (grad * x).sum(dim=1, keepdim=True)
        return explain

    runs = {"linear": (linear, gradient_times_input(linear)),
            "oracle": (oracle, lambda x, t: oracle_explanation(oracle, x, t))}
    for name, (model, explain) in runs.items():
        cache = InterventionCache(model, world)
        assert cache.num_classes == classes
        result = evaluate_parts(model, world, explain, thresholds=[0.05, 0.2], dilation=1, cache=cache)
        m = result.metrics
        assert m["images"] == 4 and m["contrastivity_skipped_no_pair"] == 0, name
        for key in ("accuracy", "bi", "csdc", "pc", "dc", "distractibility", "completeness", "correctness",
                    "contrastivity"):
            assert math.isnan(m[key]) or 0.0 <= m[key] <= 1.0, (name, key)
        assert cache.forward_passes == len(cache), name
        assert evaluate_parts_model(model, world, cache=cache).metrics["images"] == 4
    with pytest.raises(InputError, match="120 classes"):
        evaluate_parts_model(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, NUM_CLASSES)), world)


def test_the_oracle_takes_a_class_table():
    oracle = PartOracle(table=T1)
    assert oracle.member.shape[0] == 4
    assert oracle(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    assert torch.equal(PartOracle(table=CLASS_TABLE).member, PartOracle().member)
