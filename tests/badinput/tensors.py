"""What the tensor areas (:mod:`.explainers`, :mod:`.metrics`, :mod:`.losses`) share: an entry
point is a :class:`Target` with its tensor arguments (:class:`Arg`) and nonsense settings; each case
breaks one argument (:data:`MUTATIONS`: NaN/Inf, wrong dtypes and shapes, non-tensors, or a
harmless change that must not change the result) or passes one nonsense setting.
:func:`tensor_area` makes the :class:`~.harness.Area` of a list of targets."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import strategies as st

from sparsex.explainers import create_explainer

from .fixtures import Fixtures
from .harness import Area, Campaign, describe, finite_values, same_result

#: How a tensor argument may be broken: NaN / Inf values, another dtype, one dimension more or
#: less, one size changed or zero, not a tensor at all; or changed harmlessly (a non-contiguous
#: view, a leaf that requires grad), which must give the same result as the original.
MUTATIONS = ("nan", "inf", "dtype", "ndim+", "ndim-", "size", "empty", "type", "noncontig", "requires_grad")
_DTYPES = (torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64)
_SHAPE_WORDS = ("shape", "size", "match", "dimension", "channels", "classes", "prototypes", "images", "rows", "entries",
                "empty", "one shape", "pairs", "sample", "same number", "at least")

#: Other words that name a setting in an error message.
_SYNONYMS = {"target": ("class",), "indices": ("index",), "group": ("class",), "classes": ("class",),
             "feature_size": ("feature map",), "num_classes": ("classes",), "dataset": ("part world",),
             "weights": ("weight", "mask objective")}


@dataclass
class Arg:
    """A tensor argument: ``kind`` "float" (finite floats), "int" (integer classes or indices),
    "bool", "mask" (floats in [0, 1]; bool and integer 0/1 accepted too) or "any-real" (any real
    dtype). ``nan_ok``: NaN values are meaningful (e.g. a class without samples); ``flex_ndim``:
    another rank may be valid."""

    kind: str = "float"
    nan_ok: bool = False
    flex_ndim: bool = False
    optional: bool = False  # None is a valid value
    inf_ok: bool = False  # +-Inf are valid values (ranks, comparisons)
    sequence_ok: bool = False  # nested lists / arrays of numbers are valid too


@dataclass
class Target:
    """One entry point: ``call(**kwargs)`` with valid kwargs from ``build(fx)``; ``args`` the tensor
    arguments to break; ``settings`` nonsense values for its other arguments (each must be
    refused, naming the setting; a ``create:`` prefix marks a setting of the explainer's
    constructor); ``nan_out`` results may hold NaN (documented); ``check(result, kwargs)`` checks a
    result beyond :func:`~.harness.finite_values` (``None`` when right, else what is wrong)."""

    name: str
    call: Callable[..., Any]
    build: Callable[[Fixtures], dict[str, Any]]
    args: dict[str, Arg] = field(default_factory=dict)
    settings: dict[str, list[Any]] = field(default_factory=dict)
    nan_out: bool = False
    check: Callable[[Any, dict[str, Any]], str | None] | None = None


def rand(*shape: int, seed: int = 0, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Uniform floats in ``[low, high)`` of ``shape``, the same for the same ``seed``."""
    return low + (high - low) * torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def class_labels(n: int, k: int) -> torch.Tensor:
    """``n`` class indices ``0, 1, ..., k - 1, 0, 1, ...``."""
    return torch.arange(n) % k


def _mutate(x: torch.Tensor, mutation: str, rng: Any) -> Any:
    """``x`` broken (or harmlessly changed) as ``mutation`` says; ``rng`` (a ``random.Random``) picks the details."""
    if mutation in ("nan", "inf"):
        y = x.clone()
        flat = y.view(-1)
        value = float("nan") if mutation == "nan" else rng.choice([float("inf"), float("-inf")])
        flat[rng.randint(0, flat.numel() - 1)] = value
        return y
    if mutation == "dtype":
        dtype = rng.choice([d for d in _DTYPES if d != x.dtype])
        return x.to(dtype) if not (dtype.is_complex and x.dtype == torch.bool) else x.float().to(dtype)
    if mutation == "ndim+":
        return x.unsqueeze(rng.randint(0, x.dim()))
    if mutation == "ndim-":
        return x[0] if x.dim() > 1 and rng.random() < 0.5 else x.flatten()[0] if x.dim() == 1 else x.flatten(0, 1)
    if mutation in ("size", "empty"):
        dim = rng.randint(0, x.dim() - 1)
        if mutation == "empty":
            return x.narrow(dim, 0, 0)
        if x.shape[dim] > 1 and rng.random() < 0.5:
            return x.narrow(dim, 0, x.shape[dim] - 1)
        return torch.cat([x, x.narrow(dim, 0, 1)], dim=dim)
    if mutation == "type":
        return rng.choice([x.tolist(), x.numpy(), None, "tensor", 3.0])
    if mutation == "noncontig":
        if x.dim() >= 2:
            return x.transpose(0, 1).contiguous().transpose(0, 1)
        return torch.stack([x, x], dim=-1)[..., 0]
    if mutation == "requires_grad":
        return x.clone().requires_grad_() if x.is_floating_point() else x
    raise ValueError(mutation)


def _applicable(x: torch.Tensor, mutation: str) -> bool:
    """Whether ``mutation`` can change ``x`` (a case that cannot passes a non-tensor instead)."""
    if mutation in ("nan", "inf"):
        return x.is_floating_point() and x.numel() > 0
    if mutation in ("ndim-", "size", "empty", "noncontig"):
        return x.dim() >= 1 and x.numel() > 0
    if mutation == "requires_grad":
        return x.is_floating_point()
    return True


def _must_fail(arg: Arg, broken: Any, mutation: str) -> tuple[bool, tuple[str, ...]]:
    """Whether ``broken`` must be refused, and the words the error must contain."""
    if mutation in ("nan", "inf"):
        ok = arg.nan_ok if mutation == "nan" else arg.nan_ok or arg.inf_ok
        return not ok, ("nan" if mutation == "nan" else "inf", "finite", "0 and 1", "[0, 1]")
    if mutation == "type":
        valid = (broken is None and arg.optional) or (arg.sequence_ok and isinstance(broken, (list, np.ndarray)))
        return not valid, ("tensor", "must be", "got")
    if mutation == "dtype":
        dtype = broken.dtype
        words = ("dtype", "float", "integer", "bool", "real", "complex")
        if arg.kind == "float":
            return not dtype.is_floating_point, words
        if arg.kind == "int":
            return dtype.is_floating_point or dtype.is_complex or dtype == torch.bool, words
        if arg.kind == "bool":
            return dtype != torch.bool, words
        return dtype.is_complex, words  # mask / any-real
    if mutation in ("ndim+", "ndim-"):
        return not arg.flex_ndim, _SHAPE_WORDS
    return False, _SHAPE_WORDS


@st.composite
def tensor_cases(draw: Callable, targets: list[Target]) -> tuple[int, str, str, Any]:
    """``(target index, argument or setting, mutation, value)``: for a broken argument the value
    seeds the mutation's details; for a setting (mutation "setting") it is the nonsense value; a
    target without arguments or settings is called on its valid inputs (mutation "base")."""
    index = draw(st.integers(0, len(targets) - 1))
    target = targets[index]
    choices = [("arg", a) for a in target.args] + [("setting", s) for s in target.settings]
    if not choices:
        return index, "", "base", None
    kind, name = draw(st.sampled_from(choices))
    if kind == "setting":
        return index, name, "setting", draw(st.sampled_from(target.settings[name]))
    mutation = draw(st.sampled_from(MUTATIONS))
    return index, name, mutation, draw(st.integers(0, 2**32 - 1))


def _base_result(area: str, fx: Fixtures, target: Target) -> Any:
    """``target`` on its valid inputs (once per campaign)."""
    return fx.once(f"base-{area}-{target.name}", lambda: target.call(**target.build(fx)))


def check_tensor_case(campaign: Campaign, fx: Fixtures, area: str, target: Target, case: tuple[int, str, str, Any]) -> None:
    """Call one entry point with one argument broken (or one setting nonsense): ``case`` as
    :func:`tensor_cases` draws it, ``target`` the entry point its index names."""
    _, name, mutation, value = case
    kwargs = target.build(fx)

    def right(result: Any) -> str | None:
        problem = finite_values(result, allow_nan=target.nan_out)
        if problem is None and target.check is not None:
            problem = target.check(result, kwargs)
        return problem

    if mutation == "base":
        campaign.run(area, f"{target.name} on valid inputs", lambda: target.call(**kwargs), must_fail=False, check=right)
        return
    if mutation == "setting":
        if name.startswith("create:"):  # an explainer's constructor setting
            setting = name.split(":", 1)[1]
            model = kwargs["explainer"].model
            x = kwargs["inputs"]
            if setting == "model":
                campaign.run(area, f"create_explainer({target.name!r}, model={describe(value)})",
                             lambda: create_explainer(target.name, value).attribute(x), expect=("model",))
                return
            campaign.run(area, f"create_explainer({target.name!r}, {setting}={value!r}).attribute",
                         lambda: create_explainer(target.name, model, **{setting: value}).attribute(x),
                         expect=(setting, str(value), *_SYNONYMS.get(setting, ())))
            return
        kwargs[name] = value
        words = (name, *name.split("_"), *_SYNONYMS.get(name, ()))
        campaign.run(area, f"{target.name}({name}={describe(value)})", lambda: target.call(**kwargs), expect=words)
        return
    arg = target.args[name]
    original = kwargs[name]
    if not _applicable(original, mutation):
        mutation = "type"
    broken = _mutate(original, mutation, random.Random(value))
    kwargs[name] = broken
    must_fail, words = _must_fail(arg, broken, mutation)
    words = (*words, name)
    shown = f"{target.name}({name}={describe(broken)}) [{mutation}]"
    if mutation in ("noncontig", "requires_grad"):
        try:
            base = _base_result(area, fx, target)
        except Exception:  # noqa: BLE001 - the valid inputs fail (a case of its own): the view must fail too
            campaign.run(area, shown, lambda: target.call(**kwargs))
            return
        campaign.run(area, shown, lambda: target.call(**kwargs), must_fail=False,
                     check=lambda result: same_result(result, base) or right(result))
        return
    campaign.run(area, shown, lambda: target.call(**kwargs), must_fail=must_fail, expect=words, check=right)


def fixed_tensor_cases(targets: list[Target]) -> list[tuple[int, str, str, Any]]:
    """Every target on valid inputs, each tensor argument with NaN, as a non-tensor and in another
    dtype, and every nonsense setting."""
    cases = []
    for index, target in enumerate(targets):
        cases.append((index, "", "base", None))
        for name in target.args:
            cases += [(index, name, "nan", 1), (index, name, "type", 2), (index, name, "dtype", 3)]
        for name, values in target.settings.items():
            cases += [(index, name, "setting", v) for v in values]
    return cases


def tensor_area(name: str, targets: list[Target], test_examples: int) -> Area:
    """The area ``name`` of the entry points ``targets``: its cases are :func:`tensor_cases`."""
    return Area(name, cases=lambda: tensor_cases(targets), fixed_cases=lambda: fixed_tensor_cases(targets),
                check=lambda campaign, fx, case: check_tensor_case(campaign, fx, name, targets[case[0]], case),
                test_examples=test_examples)
