"""Area "explainers": every registered explainer and the explainers outside the registry, on
broken inputs and with nonsense targets and settings."""

from __future__ import annotations

from typing import Any

import torch

from sparsex.explainers import create_explainer, list_explainers
from sparsex.explainers.circuit import readout
from sparsex.explainers.minimal_mask import MinimalMask
from sparsex.explainers.prototypes import PrototypeExplainer

from .fixtures import Fixtures
from .harness import describe, finite_values
from .tensors import Arg, Target, rand, tensor_area


def _registered_explainer_targets() -> list[Target]:
    """Every explainer of the registry (tiny settings), with nonsense targets and constructor settings."""
    tiny = {"integrated-gradients": {"n_steps": 4, "internal_batch_size": 8}, "per-image-mask": {"steps": 2},
            "occlusion": {"window": 2}, "saliency": {}, "gradcam": {}, "prototypes": {}}
    nonsense: dict[str, dict[str, list[Any]]] = {
        "integrated-gradients": {"n_steps": [0, -1, 1.5, float("nan"), "5", True], "baseline": ["bogus", float("nan"), [1], True],
                                 "sigma": [0, -1.0, float("inf"), "x"], "method": ["bogus", 3],
                                 "internal_batch_size": [0, -2, 2.5]},
        "saliency": {"bogus": [1]},
        "gradcam": {"layer": ["bogus", 3, ""], "interpolate_mode": ["bogus", None]},
        "occlusion": {"window": [0, -1, (0, 2), (2,), 1000, "2"], "stride": [0, (3, 0)], "baseline": ["bogus", float("inf")],
                      "sigma": [-1.0], "internal_batch_size": [0]},
        "per-image-mask": {"steps": [0, -1, 2.5], "lr": [float("nan"), -1.0, 0.0, float("inf"), "x"], "downsample": [0, -2],
                           "weights": [{"bogus": 1.0}, {"area": -1.0}, {"area": float("nan")}], "area_budget": [0, 1.5, float("nan")],
                           "internal_batch_size": [0], "blur_sigma": [-1.0, float("nan")], "seed": [-1, 1.5, "x"],
                           "layers": [["bogus"], "bogus", []]},
        "prototypes": {"eps": [float("nan"), -1.0, "x", None]},
        "minimal-mask": {"checkpoint": ["missing-folder", 3, None]},
    }
    targets = []
    for name in list_explainers():
        proto = name == "prototypes"

        def build(fx: Fixtures, name: str = name, proto: bool = proto) -> dict[str, Any]:
            model = fx.prototype_classifier() if proto else fx.classifier()
            settings = {"checkpoint": fx.minimal_mask_checkpoint()} if name == "minimal-mask" else tiny.get(name, {})
            explainer = fx.once(f"explainer-{name}", lambda: create_explainer(name, model, **settings))
            return {"explainer": explainer, "inputs": rand(2, 3 if proto else 1, 8, 8, seed=1), "target": None}

        def call(explainer: Any, inputs: Any, target: Any) -> Any:
            return explainer.attribute(inputs, target)

        def check(result: Any, kwargs: dict[str, Any]) -> str | None:
            x = kwargs["inputs"]
            expected = (x.shape[0], 1, *x.shape[2:])
            if not isinstance(result, torch.Tensor) or tuple(result.shape) != expected:
                return f"{describe(result)}, expected maps {expected}"
            return finite_values(result)

        settings = nonsense.get(name, {})
        targets.append(Target(name, call, build, {"inputs": Arg("float")},
                              {"target": [-1, 10**6, 2**63 - 1, 1.5, True, "no-such-class", [0], [0, 1, 2], torch.tensor([0.5, 1.0]),
                                          torch.tensor([[0], [1]]), float("nan")],
                               **{f"create:{k}": v for k, v in settings.items()},
                               "create:model": [None, "model", torch.zeros(3)]}, check=check))
    return targets


def _other_explainer_targets() -> list[Target]:
    """The explainers outside the registry: the circuit readout, the amortised mask explainer and
    a prototype head's per-image explanation."""

    def mask_explainer(fx: Fixtures) -> Any:
        return fx.once("minimal-mask", lambda: MinimalMask(fx.classifier()))

    def explanation(fx: Fixtures) -> Any:
        model = fx.prototype_classifier()
        return fx.once("prototype-explainer", lambda: PrototypeExplainer(model.head, model.backbone))

    return [
        Target("circuit.readout", readout, lambda fx: {"model": fx.classifier(), "x": rand(1, 8, 8, seed=50)},
               {"x": Arg(flex_ndim=True)},
               {"top_k": [0, -1, 1.5, "x"], "threshold": [float("nan"), -0.1, 1.0, float("inf"), "x"], "edge_top_k": [0, -1],
                "other_classes": [-1, 1.5], "target": [-1, 10**6, 1.5, "x", [0, 1]], "layers": ["bogus", [], ["bogus"], 5],
                "model": [None, "model"]}),
        Target("MinimalMask.attribute", lambda explainer, inputs, **kw: explainer.attribute(inputs, **kw),
               lambda fx: {"explainer": mask_explainer(fx), "inputs": rand(2, 1, 8, 8, seed=51)}, {"inputs": Arg()},
               {"target": [-1, 10**6, 1.5, "x"]},
               check=lambda result, kw: None if tuple(result.shape) == (kw["inputs"].shape[0], 1, *kw["inputs"].shape[2:])
               else f"masks {tuple(result.shape)}"),
        Target("PrototypeExplainer.explain", lambda explainer, image, **kw: explainer.explain(image, **kw),
               lambda fx: {"explainer": explanation(fx), "image": rand(3, 8, 8, seed=52)}, {"image": Arg(flex_ndim=True)},
               {"top_classes": [0, -1, "x", 1.5], "eps": [float("nan"), -1.0, "x"], "target": [-1, 5, 1.5, "x", True]}),
        Target("PrototypeExplainer.attribute", lambda explainer, inputs, **kw: explainer.attribute(inputs, **kw),
               lambda fx: {"explainer": explanation(fx), "inputs": rand(2, 3, 8, 8, seed=53)}, {"inputs": Arg()},
               {"target": [-1, 5, 1.5, "x", [0, 1, 2], torch.tensor([0.5, 0.5])]}),
    ]


AREA = tensor_area("explainers", [*_registered_explainer_targets(), *_other_explainer_targets()], test_examples=100)
