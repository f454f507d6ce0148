"""The explainer registry and base class: ``create_explainer(name, model, **settings)``,
``list_explainers()``.

An explainer has captum's shape: the constructor takes the classifier ``model`` (an
``nn.Module`` mapping images ``(B, C, H, W)`` to logits ``(B, K)``) and settings;
``attribute(inputs, target=None)`` returns one map per image, ``(B, 1, H, W)``, on the inputs'
device. Adding one is a subclass and a decorator::

    @EXPLAINERS.register("my-method", description="what it shows")
    class MyExplainer(Explainer):
        def __init__(self, model, strength: float = 1.0):
            super().__init__(model)
            self.strength = strength

        def _attribute(self, inputs, targets):  # inputs (B, C, H, W), targets (B,) int64
            return ...  # (B, 1, H, W)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..checks import check_tensor
from ..errors import SparsexError
from ..inference import Target, check_model, check_model_device, class_index, class_names, class_targets, frozen, predict_logits
from ..registry import Registry

EXPLAINERS: Registry[Callable[..., "Explainer"]] = Registry("explainer")


def create_explainer(name: str, model: nn.Module, **settings: Any) -> "Explainer":
    """Create a registered explainer for ``model``, e.g.
    ``create_explainer("integrated-gradients", model, n_steps=32)``. An unknown name or setting
    raises a one-line error listing the valid ones."""
    factory = EXPLAINERS.get(name).factory
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n, p in params.items() if n != "model" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise SparsexError(f"unknown {name} setting(s) {', '.join(unknown)}; valid: {', '.join(valid) or '(none)'}")
    required = [n for n, p in params.items() if n != "model" and p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in settings]
    if required:
        raise SparsexError(f"explainer {name} needs the setting(s) {', '.join(required)} "
                           f"(e.g. create_explainer({name!r}, model, {required[0]}=...))")
    return factory(model, **settings)


def list_explainers() -> list[str]:
    """Names of all registered explainers."""
    return EXPLAINERS.names()


class Explainer:
    """Base class of the per-pixel explainers of a classifier.

    Subclasses implement :meth:`_attribute`; :meth:`attribute` checks the inputs (finite floats
    ``(B, C, H, W)``, on the model's device), resolves the targets and runs ``_attribute`` with
    the model frozen (eval mode, parameters not requiring gradients, so no gradient reaches the
    weights; both restored afterwards) and gradients enabled for the inputs.
    """

    #: the registered name, set by subclasses
    name: ClassVar[str] = ""
    #: True for explainers that explain only the model's predicted class (a mask explainer):
    #: protocols that ask for other classes' explanations skip them
    explains_predicted_class_only: ClassVar[bool] = False
    #: at most this many images go through the model in one forward pass (``None``: all at once)
    internal_batch_size: int | None = None

    def __init__(self, model: nn.Module) -> None:
        self.model = check_model(model)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Per-pixel attributions ``(B, 1, H, W)`` for ``inputs (B, C, H, W)``, detached, on the
        inputs' device, in their dtype.

        ``target``: ``None`` explains the model's top-1 class on ``inputs``; an int or a class name
        (``"daisy"``, from the model's ``classes``) explains that class for every image; a ``(B,)``
        tensor (or sequence) one class per image. A class outside
        ``[0, K)`` raises a one-line :class:`~sparsex.errors.InputError` naming ``K``.
        """
        check_tensor(inputs, "inputs", "(B, C, H, W)", nonempty=True)
        check_model_device(self.model, inputs)
        inputs = inputs.detach()
        num_classes = getattr(self.model, "num_classes", None)
        with frozen(self.model):
            if target is None or not isinstance(num_classes, int):  # the prediction (or K) needs a forward pass
                logits = predict_logits(self.model, inputs, self.internal_batch_size)
                num_classes = logits.shape[1]
            if isinstance(target, str):  # a class name (the model's classes, e.g. "daisy")
                target = class_index(target, class_names(self.model, num_classes))
            targets = logits.argmax(dim=1) if target is None else class_targets(target, len(inputs), num_classes,
                                                                                inputs.device)
            with torch.enable_grad():
                maps = self._attribute(inputs, targets)
        expected = (inputs.shape[0], 1, *inputs.shape[2:])
        if tuple(maps.shape) != expected:  # a bug in the subclass, not the user's input
            raise RuntimeError(f"{type(self).__name__} returned shape {tuple(maps.shape)}, expected {expected}")
        return maps.detach().to(device=inputs.device, dtype=inputs.dtype)

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Attributions ``(B, 1, H, W)`` for checked ``inputs (B, C, H, W)`` and ``targets (B,)`` int64."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
