import pytest
import torch

from sparsex.checkpoint import save_checkpoint
from sparsex.errors import InputError, SparsexError
from sparsex.models import create_model, list_models, load_model
from sparsex.models.vsc import VSC


@pytest.mark.parametrize("arch, size", [("mlp", 28), ("conv", 28), ("mlp", 8), ("conv", 8)])
def test_shapes(arch, size):
    torch.manual_seed(0)
    model = create_model("vsc", image_size=size, latent_dim=6, hidden_dim=16, conv_channels=4, arch=arch)
    x = torch.rand(3, 1, size, size)
    out = model(x, spike_scale=50.0)
    assert out.logits.shape == (3, 1, size, size) and out.recon.min() >= 0 and out.recon.max() <= 1
    assert out.mu.shape == out.logvar.shape == out.gamma.shape == out.z.shape == (3, 6)
    assert ((out.gamma > 0) & (out.gamma < 1)).all()
    assert model.encode_all(x, batch_size=2).shape == (3, 6)


def test_sampling_and_deterministic_code():
    mu = torch.tensor([[2.0, -1.0, 0.5]])
    logvar = torch.full((1, 3), -30.0)  # no slab noise
    gamma = torch.tensor([[0.999, 0.6, 0.001]])
    # a huge scale makes the relaxed spike a hard Bernoulli(gamma) draw: dims 0 on, 2 off
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([VSC.sample(mu, logvar, gamma, 1e4, generator) for _ in range(400)])[:, 0]
    draws = draws.round(decimals=3)
    assert (draws[:, 0] == 2).float().mean() > 0.99 and (draws[:, 2] == 0).float().mean() > 0.99
    assert 0.5 < (draws[:, 1] == -1).float().mean() < 0.7 and ((draws[:, 1] == -1) | (draws[:, 1] == 0)).all()
    assert VSC.code(mu, gamma).tolist() == [[2.0, -1.0, 0.0]]
    model = create_model("vsc", latent_dim=3, hidden_dim=8)
    out = model(torch.rand(2, 1, 28, 28))  # no spike scale: the deterministic code
    assert torch.equal(out.z, VSC.code(out.mu, out.gamma))


def test_registry_and_checkpoint_round_trip(tmp_path):
    assert "vsc" in list_models()
    model = create_model("vsc", image_size=[8, 8], latent_dim=4, hidden_dim=8, arch="conv", conv_channels=2)
    save_checkpoint(tmp_path / "ck", model, "vsc", {"model": {"name": "vsc", **model.settings()}})
    loaded, checkpoint = load_model(tmp_path / "ck", family="vsc")
    assert loaded.arch == "conv" and loaded.image_size == (8, 8) and checkpoint.family == "vsc"
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x).logits, model.eval()(x).logits)


def test_bad_input_is_a_one_line_error():
    model = create_model("vsc", latent_dim=4, hidden_dim=8)
    with pytest.raises(InputError, match=r"expects images \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(InputError, match=r"expects images .* got \(2, 784\)"):
        model(torch.rand(2, 784))
    with pytest.raises(InputError, match="got list"):
        model([[0.0]])
    with pytest.raises(InputError, match=r"lie in \[0, 1\]"):
        model(torch.rand(2, 1, 28, 28) * 255)
    with pytest.raises(InputError, match="floating-point"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"codes \(B, 4\)"):
        model.decode(torch.zeros(2, 5))


def test_bad_settings():
    with pytest.raises(SparsexError, match="divisible by 4"):
        create_model("vsc", image_size=30, arch="conv")
    with pytest.raises(SparsexError, match="unknown VSC architecture 'rnn'"):
        create_model("vsc", arch="rnn")
    with pytest.raises(SparsexError, match="latent_dim must be a positive integer, got 0"):
        create_model("vsc", latent_dim=0)
