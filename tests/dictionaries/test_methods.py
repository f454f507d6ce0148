"""Dictionary methods: bad settings, NaN activations, L0 per method, exact PCA, checkpoint round trip."""

import itertools

import pytest
import torch

from sparsex.dictionaries import METHODS, Dictionary, fit_dictionary, patches
from sparsex.dictionaries.engine import matryoshka_ends, matryoshka_loss
from sparsex.dictionaries.grading import fvu, mean_l0
from sparsex.dictionaries.methods import check_method, keep_top
from sparsex.errors import InputError, SparsexError


def sparse_data(n=600, channels=12, atoms=8, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, channels, generator=g)
    codes = torch.zeros(n, atoms)
    index = torch.stack([torch.randperm(atoms, generator=g)[:k] for _ in range(n)])
    codes.scatter_(1, index, torch.rand(n, k, generator=g) + 0.5)
    return codes @ dictionary


@pytest.mark.parametrize("method,atoms,k,channels,pattern", [
    ("nope", 8, 2, None, "unknown dictionary method"),
    ("topk", 0, 1, None, "atoms"),
    ("topk", 8, 9, None, "k"),
    ("topk", 8, 0, None, "k"),
    ("kmeans", 8, 2, None, "k must be 1"),
    ("pca", 16, 2, 12, "at most as many atoms"),
])
def test_bad_settings(method, atoms, k, channels, pattern):
    with pytest.raises(SparsexError, match=pattern):
        check_method(method, atoms, k, channels)


def test_nan_activations_are_refused():
    x = sparse_data()
    x[3, 2] = float("nan")
    with pytest.raises(InputError, match="1 NaN or infinite"):
        fit_dictionary("topk", x, 8, 2, epochs=1)


def test_keep_top():
    codes = torch.tensor([[3.0, -5.0, 1.0], [0.5, 2.0, 4.0]])
    assert keep_top(codes, 1, by_magnitude=True).tolist() == [[0.0, -5.0, 0.0], [0.0, 0.0, 4.0]]
    assert keep_top(codes, 1, by_magnitude=False).tolist() == [[3.0, 0.0, 0.0], [0.0, 0.0, 4.0]]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fits_at_its_sparsity(method):
    x = sparse_data()
    k = 1 if method == "kmeans" else 2
    dictionary = fit_dictionary(method, x, 8, k, epochs=30, lr=3e-3, batch_size=64)
    codes = dictionary.encode(x)
    assert codes.shape == (600, 8) and torch.isfinite(codes).all()
    if method in ("batchtopk", "matryoshka"):  # k codes per sample on average, through the running threshold
        assert 0.5 * k <= mean_l0(codes) <= 2 * k
    elif method == "jumprelu":  # thresholds calibrated to a mean L0 of k on the training samples
        assert mean_l0(codes) == pytest.approx(k, abs=0.05)
    else:
        assert ((codes != 0).sum(1) <= k).all() and mean_l0(codes) > 0.5 * k
    assert fvu(dictionary.standardize(x), dictionary.decode(codes)) < 1.0
    restored = Dictionary(method, 12, 8, k)
    restored.load_state_dict(dictionary.state_dict())
    assert torch.allclose(restored.encode(x), codes, atol=1e-5)


@pytest.mark.parametrize("method", ["topk", "batchtopk", "matryoshka", "jumprelu", "mp"])
def test_a_fit_depends_on_its_seed_alone(method):
    """The SAE's initial weights come from the fit's seed, not from whatever drew random numbers before."""
    x = sparse_data()
    fits = []
    for before in (1, 2):
        torch.manual_seed(before)
        dictionary = Dictionary(method, 12, 8, 2)
        torch.rand(7)  # the global stream moves on between construction and fit
        dictionary.fit(x, 2, 1e-3, 64, seed=5)
        fits.append(dictionary.dictionary())
    assert torch.equal(fits[0], fits[1])


def test_a_diverged_fit_is_a_clear_error():
    """JumpReLU at lr 1000 ends with NaN weights: one line saying so, not NaN figures downstream."""
    with pytest.raises(SparsexError, match="jumprelu fit diverged.*lower --lr"):
        fit_dictionary("jumprelu", sparse_data(), 8, 2, epochs=3, lr=1e3, batch_size=64)
    # at lr 1 it stays finite but its encoder falls silent: the mean L0 it was to be held at is out of reach
    with pytest.raises(SparsexError, match="jumprelu fit reaches a mean L0 of 0.*not the 2 asked"):
        fit_dictionary("jumprelu", sparse_data(), 8, 2, epochs=3, lr=1.0, batch_size=64)


def test_matryoshka_prefixes_and_loss_by_hand():
    assert matryoshka_ends(256) == [16, 32, 64, 128, 256]  # the public code's N/16, N/16, N/8, N/4, N/2
    assert matryoshka_ends(8) == [1, 2, 3, 4, 8] and matryoshka_ends(1) == [1]
    # 8 atoms, prefixes 1, 2, 3, 4, 8: x = 2 e0 + e1 coded by atoms 0 (e0, code 2) and 5 (e1, code 1)
    dictionary = torch.zeros(8, 2)
    dictionary[0, 0] = dictionary[5, 1] = 1.0
    codes = torch.zeros(1, 8)
    codes[0, 0], codes[0, 5] = 2.0, 1.0
    x = torch.tensor([[2.0, 1.0]])
    # prefixes 1-4 miss e1: error (0^2 + 1^2) / 2 = 0.5 each; the whole dictionary: 0
    assert matryoshka_loss(x, codes, dictionary).item() == pytest.approx((4 * 0.5 + 0) / 5)


def test_matryoshka_loss_matches_the_public_code():
    """github.com/bartbussmann/matryoshka_sae, sae.py, GlobalBatchTopKMatryoshkaSAE.forward and
    get_loss_dict on identical tensors: prefix reconstructions accumulated group by group from
    ``b_dec``, then ``(||b_dec - x||^2 + sum_g ||x_g - x||^2) / (G + 1)`` (element means). Without a
    decoder bias (``b_dec = 0``, as in overcomplete) the first term is the constant ``mean x^2``."""
    g = torch.Generator().manual_seed(3)
    x, codes, dictionary = torch.randn(5, 6, generator=g), torch.rand(5, 32, generator=g), torch.randn(32, 6, generator=g)
    group_sizes = [32 // 16, 32 // 16, 32 // 8, 32 // 4, 32 // 2]  # their main.py's groups
    starts = [0, *itertools.accumulate(group_sizes)]
    b_dec = torch.zeros(6)
    reconstruct, total = b_dec, (b_dec - x).pow(2).mean()
    for start, end in zip(starts[:-1], starts[1:]):
        reconstruct = codes[:, start:end] @ dictionary[start:end] + reconstruct
        total = total + (reconstruct - x).pow(2).mean()
    theirs = total / (len(group_sizes) + 1)
    groups = len(group_sizes)
    assert matryoshka_ends(32) == starts[1:]
    assert matryoshka_loss(x, codes, dictionary).item() == pytest.approx(
        ((theirs * (groups + 1) - x.pow(2).mean()) / groups).item(), rel=1e-5)


def hierarchical_data(n=2000, channels=16, seed=0):
    """Two parent features, each present on 15% of the samples together with one of its four
    children: ``x = a (p_f + c_f,i)``, all directions orthonormal."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(channels, channels, generator=g))[0].T
    parents, children = basis[:2], basis[2:10].view(2, 4, channels)
    x = torch.zeros(n, channels)
    for family in range(2):
        present = (torch.rand(n, generator=g) < 0.15)[:, None]
        child = torch.randint(0, 4, (n,), generator=g)
        x += present * (1 + 0.2 * torch.rand(n, 1, generator=g)) * (parents[family] + children[family][child])
    return x, parents


def test_matryoshka_learns_the_parent_that_batchtopk_absorbs():
    """Feature absorption (Bussmann et al., arXiv 2503.17547): BatchTopK learns one atom per parent +
    child pair (cosine 1/sqrt 2 with the parent); the Matryoshka loss makes an early atom the parent."""
    x, parents = hierarchical_data()
    best = {}
    for method in ("batchtopk", "matryoshka"):
        atoms = fit_dictionary(method, x, 16, 4, epochs=40, lr=3e-3, batch_size=100, seed=0).dictionary()
        best[method] = (torch.nn.functional.normalize(atoms, dim=1) @ parents.T).max().item()
    assert best["matryoshka"] > 0.8 > best["batchtopk"], best


def test_pca_with_every_component_reconstructs_exactly():
    x = sparse_data()
    dictionary = fit_dictionary("pca", x, 12, 12)
    assert fvu(dictionary.standardize(x), dictionary.decode(dictionary.encode(x))) < 1e-8


def test_topk_learns_a_sparse_dictionary():
    x = sparse_data()
    dictionary = fit_dictionary("topk", x, 8, 2, epochs=200, lr=5e-3, batch_size=100)
    assert fvu(dictionary.standardize(x), dictionary.decode(dictionary.encode(x))) < 0.3


def test_patches_layout():
    features = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    rows = patches(features)
    assert rows.shape == (8, 3) and rows[1].tolist() == features[0, :, 0, 1].tolist()
    assert patches(features, pooled=True)[1].tolist() == features[1].mean(dim=(1, 2)).tolist()
    with pytest.raises(InputError):
        patches(features[0])
