import math

import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses import ocla_loss


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_ocla_hand_computed_case_defaults():
    # logits [[0, 2], [1, -1]], targets [0, 1], t = 0.5, weight = 200:
    # image 0: true class 0 at p = 0.5 (not below t: 0); wrong class 1 at s(2) -> s(2) - 0.5
    # image 1: true class 1 at s(-1) -> 0.5 - s(-1); wrong class 0 at s(1) -> s(1) - 0.5
    expected = 200 * ((sigmoid(2.0) - 0.5) + (0.5 - sigmoid(-1.0)) + (sigmoid(1.0) - 0.5)) / 2
    assert expected == pytest.approx(84.2914235238, abs=1e-9)
    loss = ocla_loss(torch.tensor([[0.0, 2.0], [1.0, -1.0]], dtype=torch.float64), torch.tensor([0, 1]))
    assert loss.shape == () and loss.item() == pytest.approx(expected, abs=1e-6)


def test_ocla_hand_computed_case_three_classes():
    # t = 0.3, weight = 10, targets [0, 1]:
    # image 0 (logits 0, 2, -1): true p = 0.5 >= t -> 0; wrong: s(2) - 0.3, s(-1) ~ 0.269 < t -> 0
    # image 1 (logits 1, -1, 0.5): true p = s(-1) -> 0.3 - s(-1); wrong: s(1) - 0.3, s(0.5) - 0.3
    expected = 10 * ((sigmoid(2.0) - 0.3) + (0.3 - sigmoid(-1.0)) + (sigmoid(1.0) - 0.3) + (sigmoid(0.5) - 0.3)) / 2
    assert expected == pytest.approx(6.8268678322, abs=1e-9)
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -1.0, 0.5]])
    loss = ocla_loss(logits, torch.tensor([0, 1], dtype=torch.int32), threshold=0.3, weight=10.0)
    assert loss.item() == pytest.approx(expected, abs=1e-5)  # float32 logits


def test_ocla_hand_computed_case_with_margin():
    # logits [[0, 2], [1, -1]], targets [0, 1], t = 0.5, m = 0.1, weight = 200:
    # image 0: true class at p = 0.5 is now below t + m = 0.6 -> 0.6 - 0.5; wrong s(2) - 0.4
    # image 1: true s(-1) ~ 0.269 -> 0.6 - s(-1); wrong s(1) - 0.4
    expected = 200 * ((0.6 - 0.5) + (sigmoid(2.0) - 0.4) + (0.6 - sigmoid(-1.0)) + (sigmoid(1.0) - 0.4)) / 2
    assert expected == pytest.approx(124.2914235238, abs=1e-9)
    loss = ocla_loss(torch.tensor([[0.0, 2.0], [1.0, -1.0]], dtype=torch.float64), torch.tensor([0, 1]), margin=0.1)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_ocla_is_zero_when_only_the_true_class_is_above():
    logits = torch.tensor([[-3.0, 3.0, -1.0]], requires_grad=True)
    loss = ocla_loss(logits, torch.tensor([1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_ocla_gradients_point_the_right_way():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]], requires_grad=True)
    ocla_loss(logits, torch.tensor([0, 1])).backward()
    grad = logits.grad
    assert torch.isfinite(grad).all()
    assert grad[0, 1] > 0 and grad[1, 0] > 0  # wrong classes above t are pushed down
    assert grad[1, 1] < 0  # the true class below t is pushed up
    assert grad[0, 0] == 0  # the true class at t is left alone (relu(0) has zero slope)


@pytest.mark.parametrize(
    ("logits", "targets", "kwargs", "message"),
    [
        (torch.zeros(2, 2), torch.tensor([0, 1, 0]), {}, "shape (2,)"),
        (torch.zeros(2, 2), torch.zeros(2, 2), {}, "shape (2,)"),
        (torch.zeros(2, 2), torch.tensor([0, 5]), {}, "target index 5 is out of range for 2 classes"),
        (torch.tensor([[0.0, float("nan")], [0.0, 0.0]]), torch.tensor([0, 1]), {}, "logits contain NaN"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"threshold": 0.0}, "threshold must be in (0, 1)"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"margin": -0.1}, "margin must be >= 0"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"threshold": 0.9, "margin": 0.2}, "threshold + margin <= 1"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"threshold": 1.0}, "threshold must be in (0, 1)"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), {"weight": -1.0}, "weight must be"),
    ],
)
def test_ocla_invalid_inputs(logits, targets, kwargs, message):
    with pytest.raises(InputError) as err:
        ocla_loss(logits, targets, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)
