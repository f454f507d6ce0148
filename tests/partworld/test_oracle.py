"""The oracle on a tiny part world: its own evidence scores near 1, uniform and random maps do
not. At 64 pixels the 5 x 5 dilation (FunnyBirds', at 256 pixels) is wider than an eye, so
importances are taken without dilation."""

import pytest
import torch

from sparsex.partworld import InterventionCache, PartOracle, PartWorld, PartWorldConfig, evaluate_parts, oracle_explanation


@pytest.fixture(scope="module")
def oracle_results():
    world = PartWorld("test", PartWorldConfig(image_size=64, test_size=48, max_clutter=2))
    oracle = PartOracle()
    cache = InterventionCache(oracle, world)
    generator = torch.Generator().manual_seed(0)

    def gradient_times_input(x, t):
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(oracle(x).gather(1, t[:, None]).sum(), x)
        return (grad * x).sum(dim=1, keepdim=True)

    explainers = {
        "oracle": lambda x, t: oracle_explanation(oracle, x, t),
        "uniform": lambda x, t: torch.ones(x.shape[0], 1, *x.shape[2:]),
        "random": lambda x, t: torch.rand(x.shape[0], 1, *x.shape[2:], generator=generator),
        "gradient": gradient_times_input,
    }
    results = {name: evaluate_parts(oracle, world, e, dilation=1, cache=cache).metrics for name, e in explainers.items()}
    return results, cache


def test_the_oracle_classifies_the_part_world(oracle_results):
    results, cache = oracle_results
    assert results["oracle"]["accuracy"] >= 0.85
    assert cache.forward_passes == len(cache)


def test_the_oracle_explanation_scores_near_one_and_trivial_maps_do_not(oracle_results):
    results, _ = oracle_results
    oracle = results["oracle"]
    assert oracle["completeness"] >= 0.9 and oracle["correctness"] >= 0.9 and oracle["contrastivity"] >= 0.9
    for name in ("uniform", "random"):
        assert results[name]["completeness"] <= oracle["completeness"] - 0.2, name
        assert results[name]["correctness"] <= oracle["correctness"] - 0.1, name
    assert results["uniform"]["contrastivity"] == 0.0  # one map for both targets never wins
    gradient = results["gradient"]
    assert all(0.0 <= gradient[k] <= 1.0 for k in ("completeness", "correctness", "contrastivity"))
