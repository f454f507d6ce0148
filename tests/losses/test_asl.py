import math

import pytest
import torch
import torch.nn.functional as F

from sparsex.errors import InputError
from sparsex.losses import asymmetric_loss, binary_cross_entropy_loss


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


LOGITS = [[0.0, 2.0], [1.0, -1.0]]


def test_asl_hand_computed_case():
    # targets [1, 0]: image 0 is class 1, image 1 is class 0; gamma+ = 1, gamma- = 4, m = 0.05.
    # image 0, class 0 negative: p = 0.5,  p_m = 0.45       -> 0.45^4 log(0.55)
    # image 0, class 1 positive: p = s(2)                   -> (1 - s(2)) log s(2)
    # image 1, class 0 positive: p = s(1)                   -> (1 - s(1)) log s(1)
    # image 1, class 1 negative: p = s(-1), p_m = s(-1) - 0.05 -> p_m^4 log(1 - p_m)
    p_m = sigmoid(-1.0) - 0.05
    total = (
        0.45**4 * math.log(0.55)
        + (1 - sigmoid(2.0)) * math.log(sigmoid(2.0))
        + (1 - sigmoid(1.0)) * math.log(sigmoid(1.0))
        + p_m**4 * math.log(1 - p_m)
    )
    expected = -total / 2  # sum over classes, mean over the batch of 2
    assert expected == pytest.approx(0.0622310422, abs=1e-9)
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    loss = asymmetric_loss(logits, torch.tensor([1, 0]))
    assert loss.shape == () and loss.item() == pytest.approx(expected, abs=1e-6)
    # the same targets as a {0, 1} matrix, in any dtype
    for matrix in (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[False, True], [True, False]])):
        assert asymmetric_loss(logits, matrix).item() == pytest.approx(expected, abs=1e-6)


def test_reduction_sum_is_the_reference_and_b_times_the_mean():
    # The hand case above: per-image losses L_0, L_1 (summed over classes); mean = (L_0 + L_1) / 2,
    # sum = L_0 + L_1, so value and gradient of "sum" are B = 2 times those of "mean".
    p_m = sigmoid(-1.0) - 0.05
    image_0 = -(0.45**4 * math.log(0.55) + (1 - sigmoid(2.0)) * math.log(sigmoid(2.0)))
    image_1 = -((1 - sigmoid(1.0)) * math.log(sigmoid(1.0)) + p_m**4 * math.log(1 - p_m))
    targets = torch.tensor([1, 0])
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    mean = asymmetric_loss(logits, targets)
    (grad_mean,) = torch.autograd.grad(mean, logits)
    total = asymmetric_loss(logits, targets, reduction="sum")
    (grad_sum,) = torch.autograd.grad(total, logits)
    assert mean.item() == pytest.approx((image_0 + image_1) / 2, abs=1e-12)
    assert total.item() == pytest.approx(image_0 + image_1, abs=1e-12)
    assert total.item() == pytest.approx(2 * mean.item(), abs=1e-12)
    assert torch.allclose(grad_sum, 2 * grad_mean, atol=1e-14) and grad_mean.abs().sum() > 0


def _reference_asl(x: torch.Tensor, y: torch.Tensor, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """A transcription of Alibaba-MIIL/ASL src/loss_functions/losses.py AsymmetricLoss.forward."""
    xs_pos = torch.sigmoid(x)
    xs_neg = (1 - xs_pos + clip).clamp(max=1)
    loss = y * torch.log(xs_pos.clamp(min=eps)) + (1 - y) * torch.log(xs_neg.clamp(min=eps))
    pt = xs_pos * y + xs_neg * (1 - y)
    loss = loss * torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
    return -loss.sum()


def test_reduction_sum_matches_the_reference_implementation():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    matrix = (torch.rand(5, 4) > 0.5).double()
    ours = asymmetric_loss(logits, matrix, reduction="sum")
    reference = _reference_asl(logits, matrix)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-9)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_reference,) = torch.autograd.grad(reference, logits)
    assert torch.allclose(g_ours, g_reference, atol=1e-9)
    assert asymmetric_loss(logits, matrix).item() == pytest.approx(reference.item() / 5, rel=1e-9)


def test_margin_discards_easy_negatives():
    # class 0 is a negative with p = s(-4) ~ 0.018 < m = 0.05: p_m = 0, its term is exactly 0;
    # only the positive class 1 (logit 3) remains: -(1 - s(3)) log s(3).
    loss = asymmetric_loss(torch.tensor([[-4.0, 3.0]], dtype=torch.float64), torch.tensor([1]))
    assert loss.item() == pytest.approx(-(1 - sigmoid(3.0)) * math.log(sigmoid(3.0)), abs=1e-12)


def test_multi_label_targets():
    # two positives in image 0, none in image 1; gamma+ = gamma- = 0, m = 0.1:
    # image 0: log s(0) + log s(2); image 1: negatives with p_m = max(p - 0.1, 0)
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    loss = asymmetric_loss(logits, torch.tensor([[1, 1], [0, 0]]), gamma_pos=0.0, gamma_neg=0.0, margin=0.1)
    total = math.log(0.5) + math.log(sigmoid(2.0)) + math.log(1 - (sigmoid(1.0) - 0.1)) + math.log(1 - (sigmoid(-1.0) - 0.1))
    assert loss.item() == pytest.approx(-total / 2, abs=1e-9)


def test_bce_hand_computed_case():
    # targets [1, 0]: -(log(1 - s(0)) + log s(2) + log s(1) + log(1 - s(-1))) / 2
    expected = -(math.log(0.5) + math.log(sigmoid(2.0)) + math.log(sigmoid(1.0)) + math.log(1 - sigmoid(-1.0))) / 2
    assert expected == pytest.approx(0.7232992833, abs=1e-9)
    loss = binary_cross_entropy_loss(torch.tensor(LOGITS), torch.tensor([1, 0]))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_asl_without_focusing_or_margin_is_bce_summed_over_classes():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 4
    logits[0, :2] = torch.tensor([60.0, -60.0])  # saturated sigmoids stay exact (no eps clamping)
    targets = (torch.rand(6, 5, generator=gen) < 0.4).double()
    targets[0, :2] = torch.tensor([0.0, 1.0])  # both saturated classes confidently wrong: 60 each
    reference = F.binary_cross_entropy_with_logits(logits, targets) * 5
    asl = asymmetric_loss(logits, targets, gamma_pos=0.0, gamma_neg=0.0, margin=0.0)
    assert reference.item() > 20  # (60 + 60) / 6 from the saturated pair alone
    assert asl.item() == pytest.approx(reference.item(), rel=1e-12)
    assert binary_cross_entropy_loss(logits, targets).item() == pytest.approx(reference.item(), rel=1e-12)
    indices = torch.tensor([0, 4, 2, 2, 1, 3])
    one_hot_reference = F.binary_cross_entropy_with_logits(logits, F.one_hot(indices, 5).double()) * 5
    assert binary_cross_entropy_loss(logits, indices).item() == pytest.approx(one_hot_reference.item(), rel=1e-12)


@pytest.mark.parametrize("margin", [0.0, 0.05])
@pytest.mark.parametrize("gammas", [(1.0, 4.0), (0.5, 0.5), (0.0, 0.0)])
def test_gradients_are_finite_even_for_saturated_logits(gammas, margin):
    # at +-200 float32 sigmoids are exactly 0 or 1: fractional gammas would give 0^(gamma - 1) = inf
    # in the focusing weights' gradients without the eps floor on their bases
    logits = torch.tensor([[200.0, -200.0, 0.0], [-200.0, 200.0, 0.01], [0.0, 2.0, -1.0]], requires_grad=True)
    loss = asymmetric_loss(logits, torch.tensor([0, 0, 1]), gamma_pos=gammas[0], gamma_neg=gammas[1], margin=margin)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[2, 1] < 0  # the true class's logit is pushed up
    bce_logits = logits.detach().clone().requires_grad_()
    binary_cross_entropy_loss(bce_logits, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(bce_logits.grad).all()


@pytest.mark.parametrize(
    ("targets", "kwargs", "message"),
    [
        (torch.tensor([0, 1, 1]), {}, "shape (2,)"),
        (torch.zeros(2, 3), {}, "target matrix has shape (2, 3)"),
        (torch.tensor([0, 2]), {}, "target index 2 is out of range for 2 classes"),
        (torch.tensor([-1, 0]), {}, "target index -1 is out of range"),
        (torch.tensor([0.0, 1.0]), {}, "integer dtype"),
        (torch.tensor([[0.5, 0.5], [1.0, 0.0]]), {}, "only 0 and 1"),
        (torch.tensor([0, 1]), {"gamma_pos": -1.0}, "gamma_pos must be"),
        (torch.tensor([0, 1]), {"gamma_neg": -0.5}, "gamma_neg must be"),
        (torch.tensor([0, 1]), {"margin": -0.1}, "margin must be"),
        (torch.tensor([0, 1]), {"margin": 1.0}, "margin must be below 1"),
        (torch.tensor([0, 1]), {"gamma_neg": float("nan")}, "gamma_neg must be"),
        (torch.tensor([0, 1]), {"eps": 0.0}, "eps must be in (0, 1)"),
        (torch.tensor([0, 1]), {"reduction": "none"}, "reduction must be one of mean, sum, got 'none'"),
    ],
)
def test_asl_invalid_inputs(targets, kwargs, message):
    with pytest.raises(InputError) as err:
        asymmetric_loss(torch.tensor(LOGITS), targets, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), "logits contain NaN"),
        (torch.tensor([[0.0, float("inf")], [1.0, 0.0]]), "logits contain Inf"),
        (torch.tensor([0.0, 1.0]), "shape (B, K)"),
        (torch.zeros(0, 2), "shape (B, K)"),
        (torch.tensor([[0, 1], [1, 0]]), "floating-point"),
    ],
)
@pytest.mark.parametrize("loss_fn", [asymmetric_loss, binary_cross_entropy_loss])
def test_invalid_logits(loss_fn, logits, message):
    targets = torch.tensor([0]) if logits.dim() != 2 else torch.zeros(logits.shape[0], dtype=torch.long)
    with pytest.raises(InputError) as err:
        loss_fn(logits, targets)
    assert message in str(err.value) and "\n" not in str(err.value)
