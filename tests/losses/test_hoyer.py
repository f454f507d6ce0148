import pytest
import torch

from sparsex.errors import InputError
from sparsex.losses import class_importance_hoyer_loss, hoyer_square, hoyer_square_loss


def test_hoyer_square_hand_computed_rows():
    # [3, 0, 0]: 9 / 9 = 1; [1, 1, 0]: 4 / 2 = 2; [1, -2, 2]: 25 / 9; [0, 0, 0]: 0
    x = torch.tensor([[3.0, 0, 0], [1, 1, 0], [1, -2, 2], [0, 0, 0]], dtype=torch.float64)
    assert hoyer_square(x).tolist() == pytest.approx([1.0, 2.0, 25 / 9, 0.0])
    assert hoyer_square_loss(x).item() == pytest.approx((1 + 2 + 25 / 9 + 0) / 4)


def test_hoyer_square_counts_equal_entries_and_is_scale_invariant():
    x = torch.zeros(1, 10)
    x[0, :4] = 0.3
    assert hoyer_square(x).item() == pytest.approx(4.0, rel=1e-5)
    assert hoyer_square(7 * x).item() == pytest.approx(4.0, rel=1e-5)


def test_hoyer_square_gradient_favours_the_larger_entry():
    x = torch.tensor([[2.0, 1.0]], requires_grad=True)
    hoyer_square_loss(x).backward()
    # d/dx_i (S1^2 / S2) = 2 S1 / S2 - 2 x_i S1^2 / S2^2 with S1 = 3, S2 = 5: [1.2 - 1.44, 1.2 - 0.72]
    assert x.grad.tolist()[0] == pytest.approx([-0.24, 0.48])


def test_hoyer_square_rejects_bad_input():
    with pytest.raises(InputError, match="shape"):
        hoyer_square(torch.ones(3))
    with pytest.raises(InputError, match="NaN"):
        hoyer_square(torch.tensor([[float("nan"), 1.0]]))


def test_class_importance_hoyer_loss_hand_computed():
    # scores [[1, 2, 0], [3, 0, 1]], W = [[1, 0, 1], [0, 1, 1]], targets [1, 0]
    # image 0, class 1: importances [0, 2, 0] -> HS = 4 / 4 = 1
    # image 1, class 0: importances [3, 0, 1] -> HS = 16 / 10 = 1.6; mean 1.3
    scores = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])
    weights = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    loss = class_importance_hoyer_loss(scores, weights, torch.tensor([1, 0]))
    assert loss.item() == pytest.approx(1.3, rel=1e-6)
