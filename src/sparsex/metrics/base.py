"""What every metric shares: the :class:`Metric` shape (settings at construction, data at call,
its direction read from :mod:`sparsex.metrics.registry`) and the input checks of labels, devices,
epsilons and thresholds. Every metric module builds on this one and on nothing else of
:mod:`sparsex.metrics`."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..checks import check_number
from ..errors import InputError
from .registry import HIGHER, metric_info


def _check_labels(labels: torch.Tensor, name: str, n: int, k: int) -> torch.Tensor:
    """Integer class indices ``(N,)``, each in ``[0, K)``."""
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.shape != (n,):
        raise InputError(f"{name} must have shape ({n},) to match the other inputs, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"{name} must have an integer dtype, got {labels.dtype}")
    out_of_range = (labels < 0) | (labels >= k)
    if out_of_range.any():
        raise InputError(f"{name} contain class index {labels[out_of_range][0].item()}, out of range for {k} classes")
    return labels


def _check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise InputError(f"inputs must be on one device, got {listed}")


def _check_eps(eps: float) -> float:
    return check_number(eps, "eps", 0)


def _check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise InputError(f"threshold must be in (0, 1), got {threshold!r}")
    return threshold


class Metric:
    """A metric: settings at construction, data at call. ``name`` is the score's key (in
    :func:`prototype_metrics`' result, in metrics.json) and in :mod:`sparsex.metrics.registry`,
    which states its direction: a subclass gets ``higher_is_better`` from there when it is
    defined. A subclass whose name the registry does not know, or knows without a direction, or
    that declares a ``higher_is_better`` of its own that disagrees, is refused (TypeError)."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        info = metric_info(cls.__dict__.get("name", ""))
        if info.direction is None:
            raise TypeError(f"metric class {cls.__name__} must set name to a key that sparsex.metrics.registry lists "
                            f"with a direction, got {info.name!r}")
        declared = cls.__dict__.get("higher_is_better")
        if declared is not None and declared != (info.direction == HIGHER):
            raise TypeError(f"metric class {cls.__name__} declares higher_is_better={declared}, but the registry says "
                            f"{info.direction} is better for {info.name!r}")
        cls.higher_is_better = info.direction == HIGHER
