import pytest
import torch
from torch import nn

from sparsex.errors import InputError
from sparsex.inference import check_logits, frozen, predict_logits, resolve_targets

LOGITS = torch.tensor([[0.0, 2.0, 1.0], [3.0, 3.0, 0.0]])  # top-1: 1, and a tie -> 0


def test_resolve_targets():
    assert resolve_targets(LOGITS, None).tolist() == [1, 0]
    assert resolve_targets(LOGITS, 2).tolist() == [2, 2]
    assert resolve_targets(LOGITS, [2, 1]).tolist() == [2, 1]
    out = resolve_targets(LOGITS, torch.tensor([0, 2], dtype=torch.int32))
    assert out.tolist() == [0, 2] and out.dtype == torch.int64


@pytest.mark.parametrize("target, message", [
    (3, "target class 3 is out of range: the model has 3 classes"),
    (torch.tensor([0, -1]), "target class -1 is out of range"),
    (1.0, "target must be an integer class"),
    (True, "target must be an integer class"),
    (torch.tensor([0.0, 1.0]), "must be integers"),
    ([0, 1, 2], r"one per image \(2\)"),
    ("cat", "target"),
])
def test_resolve_targets_refuses(target, message):
    with pytest.raises(InputError, match=message) as err:
        resolve_targets(LOGITS, target)
    assert "\n" not in str(err.value)


def test_frozen_restores_modes_and_flags():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Linear(2, 2))
    model[2].eval()  # mixed modes must come back as they were
    model[0].weight.requires_grad_(False)
    with frozen(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True]
    with pytest.raises(RuntimeError), frozen(model):
        raise RuntimeError("boom")
    assert model.training and model[2].bias.requires_grad


def test_predict_logits_in_batches_and_checks_the_output():
    model = nn.Linear(3, 2)
    x = torch.randn(7, 3)
    torch.testing.assert_close(predict_logits(model, x, batch_size=3), model(x).detach())
    assert not predict_logits(model, x).requires_grad
    with pytest.raises(InputError, match=r"logits \(B, K\)"):
        check_logits(torch.zeros(7), 7)
