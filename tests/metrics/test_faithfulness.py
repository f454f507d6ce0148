import math

import pytest
import torch
from torch import nn

from sparsex.errors import InputError
from sparsex.metrics import (
    DeletionAUC,
    InsertionAUC,
    MaskArea,
    Sufficiency,
    deletion_auc,
    insertion_auc,
    mask_area,
    perturbation_curve,
    sufficiency,
    sufficient,
)
from sparsex.perturb import blur

LN3 = math.log(3.0)


class LinearPixels(nn.Module):
    """Two classes on 1-channel 2x2 images: ``logits = [w . x, 0]`` with ``w = [ln 3, ln 3, 0, -ln 3]``
    (flat pixel order), so ``p(class 0) = sigmoid(w . x)``: 1/2 at 0, 3/4 at ln 3, 9/10 at 2 ln 3,
    1/4 at -ln 3."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[LN3, LN3, 0.0, -LN3]]))

    def forward(self, x):
        score = self.linear(x.flatten(1))
        return torch.cat([score, torch.zeros_like(score)], dim=1)


def one_line(error: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(error.value) and str(error.value) != ""


MODEL = LinearPixels()
X = torch.ones(2, 1, 2, 2)  # logit of class 0: ln 3 -> predicted class 0 with p = 3/4
GOOD = torch.tensor([[4.0, 3.0], [2.0, 1.0]])  # order: pixels 0, 1, 2, 3
REVERSED = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # order: pixels 3, 2, 1, 0
ATTR = torch.stack([GOOD, REVERSED]).unsqueeze(1)  # (2, 1, 2, 2)


# ---------------------------------------------------------------------------------------------
# Deletion / insertion, by hand (baseline zeros, steps = 4: one pixel per step, h = 1/4).
#
# image 0, deletion removes w0, w1, w2, w3 in turn: w . x = ln3, 0, -ln3, -ln3, 0
#   p = 3/4, 1/2, 1/4, 1/4, 1/2 -> AUC = 1/4 (3/8 + 1/2 + 1/4 + 1/4 + 1/4) = 0.40625
# image 0, insertion adds w0, w1, w2, w3:            w . x = 0, ln3, 2ln3, 2ln3, ln3
#   p = 1/2, 3/4, 9/10, 9/10, 3/4 -> AUC = 1/4 (1/4 + 3/4 + 9/10 + 9/10 + 3/8) = 0.79375
# image 1 (reversed order) gets the two numbers swapped: deletion 0.79375, insertion 0.40625.


def test_deletion_and_insertion_auc_by_hand():
    deletion = deletion_auc(MODEL, X, ATTR, baseline="zeros", steps=4)
    insertion = insertion_auc(MODEL, X, ATTR, baseline="zeros", steps=4)
    assert deletion.shape == (2,) and deletion.dtype == torch.float32
    assert deletion.tolist() == pytest.approx([0.40625, 0.79375], abs=1e-6)
    assert insertion.tolist() == pytest.approx([0.79375, 0.40625], abs=1e-6)


def test_curves_by_hand_include_both_ends():
    fractions, probs = perturbation_curve(MODEL, X, ATTR, "deletion", baseline="zeros", steps=4)
    assert fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert probs[0].tolist() == pytest.approx([0.75, 0.5, 0.25, 0.25, 0.5], abs=1e-6)
    assert probs[1].tolist() == pytest.approx([0.75, 0.9, 0.9, 0.75, 0.5], abs=1e-6)
    _, probs = perturbation_curve(MODEL, X, ATTR, "insertion", baseline="zeros", steps=4)
    assert probs[0].tolist() == pytest.approx([0.5, 0.75, 0.9, 0.9, 0.75], abs=1e-6)


def test_fewer_steps_than_pixels_by_hand():
    # steps = 2: fractions 0, 1/2, 1; image 0 deletion p = 3/4, 1/4, 1/2 -> 1/2 (3/8 + 1/4 + 1/4) = 0.4375
    assert deletion_auc(MODEL, X[:1], ATTR[:1], baseline="zeros", steps=2).item() == pytest.approx(0.4375, abs=1e-6)
    # steps = 3: n_k = floor(4k / 3) = 0, 1, 2, 4 -> fractions 0, 1/4, 1/2, 1 and p = 3/4, 1/2, 1/4, 1/2:
    # 1/4 (3/4 + 1/2) / 2 + 1/4 (1/2 + 1/4) / 2 + 1/2 (1/4 + 1/2) / 2 = 0.15625 + 0.09375 + 0.1875
    fractions, _ = perturbation_curve(MODEL, X[:1], ATTR[:1], baseline="zeros", steps=3)
    assert fractions.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert deletion_auc(MODEL, X[:1], ATTR[:1], baseline="zeros", steps=3).item() == pytest.approx(0.4375, abs=1e-6)


def test_ties_go_to_the_lower_pixel_index():
    flat = torch.full((2, 1, 2, 2), 0.7)  # all tied: order 0, 1, 2, 3 like GOOD
    assert deletion_auc(MODEL, X, flat, baseline="zeros", steps=4).tolist() == pytest.approx([0.40625] * 2, abs=1e-6)
    # (B, H, W) attributions work too
    assert deletion_auc(MODEL, X, flat[:, 0], baseline="zeros", steps=4).tolist() == pytest.approx([0.40625] * 2, abs=1e-6)


def test_target_scores_another_class():
    # class 1 has p = 1 - p(class 0) at every step: the AUC is 1 - the class-0 AUC
    auc = deletion_auc(MODEL, X, ATTR, target=1, baseline="zeros", steps=4)
    assert auc.tolist() == pytest.approx([1 - 0.40625, 1 - 0.79375], abs=1e-6)
    auc = deletion_auc(MODEL, X, ATTR, target=torch.tensor([0, 1]), baseline="zeros", steps=4)
    assert auc.tolist() == pytest.approx([0.40625, 1 - 0.79375], abs=1e-6)


def test_internal_batch_size_does_not_change_the_numbers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    x, attr = torch.rand(3, 3, 6, 6), torch.randn(3, 1, 6, 6)
    whole = insertion_auc(model, x, attr, internal_batch_size=None, steps=7)
    for size in (1, 5, 64):
        torch.testing.assert_close(insertion_auc(model, x, attr, internal_batch_size=size, steps=7), whole)
    # the default baseline is the blurred image
    torch.testing.assert_close(deletion_auc(model, x, attr), deletion_auc(model, x, attr, baseline=blur(x)))
    assert ((whole >= 0) & (whole <= 1)).all()


def test_metrics_run_the_model_frozen_and_restore_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.Flatten(), nn.Linear(8, 2))
    x, attr = torch.rand(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    stats = model[1].running_mean.clone()
    first = deletion_auc(model, x, attr, steps=4)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    torch.testing.assert_close(model[1].running_mean, stats)  # no BatchNorm update: eval mode
    torch.testing.assert_close(deletion_auc(model, x, attr, steps=4), first)  # no dropout noise


# ---------------------------------------------------------------------------------------------
# Mask area and sufficiency.


def test_mask_area_by_hand():
    masks = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]])  # (B, H, W)
    assert mask_area(masks).tolist() == [0.25, 0.5]
    assert mask_area(masks.unsqueeze(1) > 0.4).tolist() == [0.25, 0.75]  # bool masks
    assert MaskArea()(masks) == pytest.approx(0.375) and not MaskArea.higher_is_better


def test_sufficiency_by_hand():
    # keeping pixels 0, 1 (baseline 0 elsewhere): w . x = 2 ln 3 > 0 -> class 0 as on x: sufficient
    # keeping pixels 2, 3: w . x = -ln 3 < 0 -> class 1: not sufficient
    masks = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]).unsqueeze(1)
    assert sufficient(MODEL, X, masks, baseline="zeros").tolist() == [True, False]
    assert sufficiency(MODEL, X, masks, baseline="zeros") == 0.5
    assert sufficiency(MODEL, X, torch.ones(2, 1, 2, 2)) == 1.0  # the whole image keeps its label
    assert Sufficiency(baseline="zeros", internal_batch_size=1)(MODEL, X, masks) == 0.5


def test_metric_classes_declare_direction_and_average():
    assert DeletionAUC.higher_is_better is False and InsertionAUC.higher_is_better is True
    assert Sufficiency.higher_is_better is True
    assert DeletionAUC(steps=4, baseline="zeros")(MODEL, X, ATTR) == pytest.approx((0.40625 + 0.79375) / 2, abs=1e-6)
    assert InsertionAUC(steps=4, baseline="zeros")(MODEL, X, ATTR, target=1) == pytest.approx(0.4, abs=1e-6)
    assert InsertionAUC.name == "insertion_auc" and DeletionAUC.name == "deletion_auc"
    with pytest.raises(InputError, match="steps"):
        DeletionAUC(steps=0)
    with pytest.raises(InputError, match="unknown baseline"):
        InsertionAUC(baseline="noise")


# ---------------------------------------------------------------------------------------------
# Bad inputs: one-line errors.


@pytest.mark.parametrize("call, message", [
    (lambda: deletion_auc(MODEL, X, ATTR, target=2), "target class 2 is out of range: the model has 2 classes"),
    (lambda: deletion_auc(MODEL, X.masked_fill(X > 0, float("nan")), ATTR), "x contain NaN"),
    (lambda: deletion_auc(MODEL, X, ATTR.masked_fill(ATTR > 3, float("inf"))), "attributions contain Inf"),
    (lambda: deletion_auc(MODEL, X, ATTR[:1]), r"attributions must have shape \(2, 1, 2, 2\)"),
    (lambda: deletion_auc(MODEL, X, ATTR.expand(2, 3, 2, 2)), r"attributions must have shape \(B, 1, H, W\)"),
    (lambda: insertion_auc(MODEL, X[0], ATTR), r"x must have shape \(B, C, H, W\)"),
    (lambda: insertion_auc(MODEL, X, ATTR, steps=0), "steps must be a positive integer"),
    (lambda: insertion_auc(MODEL, X, ATTR, internal_batch_size=0), "internal_batch_size"),
    (lambda: perturbation_curve(MODEL, X, ATTR, mode="both"), "mode must be one of deletion, insertion"),
    (lambda: insertion_auc(lambda x: x, X, ATTR), "model must be a torch.nn.Module"),
    (lambda: insertion_auc(nn.Identity(), X, ATTR), r"logits \(B, K\)"),
    (lambda: mask_area(torch.full((1, 1, 2, 2), 1.5)), r"masks must lie in \[0, 1\]"),
    (lambda: sufficiency(MODEL, X, torch.ones(2, 1, 3, 3)), r"masks must have shape \(2, 1, 2, 2\)"),
    (lambda: sufficiency(MODEL, X, torch.ones(2, 1, 2, 2), baseline="noise"), "unknown baseline"),
])
def test_bad_inputs_give_one_line_errors(call, message):
    with pytest.raises(InputError, match=message) as err:
        call()
    assert one_line(err)
