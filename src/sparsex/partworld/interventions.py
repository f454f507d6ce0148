"""The intervention cache: a model's logits on re-rendered part-world images, each forwarded once.

An intervention is image ``i`` re-rendered without some of its part slots and clutter objects
(:meth:`PartWorld.render <sparsex.partworld.PartWorld.render>`); its key is
``(i, frozenset(parts), frozenset(clutter))`` (:func:`intervention_key`). One
:class:`InterventionCache` serves every protocol and every explainer of one model on one dataset.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..checks import check_int
from ..errors import InputError
from ..inference import DEFAULT_BATCH, check_model, frozen, predict_logits
from ..progress import progress_bar
from .dataset import PartWorld
from .shapes import NUM_PARTS

#: An intervention: (image index, removed part slots, removed clutter objects).
Key = tuple[int, frozenset[int], frozenset[int]]


def _check_part_world(dataset: Any) -> PartWorld:
    """``dataset``, checked to be a part world (any class table: the protocols use the world's own,
    ``dataset.config.class_table``)."""
    if not isinstance(dataset, PartWorld):
        raise InputError("the part protocols need the part world (a sparsex.partworld.PartWorld) for its part masks "
                         f"and its renderer of interventions, got {type(dataset).__name__}")
    return dataset


def intervention_key(index: int, parts: Iterable[int] = (), clutter: Iterable[int] = ()) -> Key:
    """The key of image ``index`` re-rendered without the part slots ``parts`` and the clutter
    objects ``clutter`` (indices): ``(index, frozenset(parts), frozenset(clutter))``."""
    return (int(index), frozenset(int(k) for k in parts), frozenset(int(j) for j in clutter))


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` (default: where the model's parameters or buffers are, else the CPU), which
    must be the model's."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    if device is None:
        return tensor.device if tensor is not None else torch.device("cpu")
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError):
        raise InputError(f"device must name a torch device, got {device!r}") from None
    own = tensor.device if tensor is not None else device
    if own.type != device.type or None not in (own.index, device.index) and own.index != device.index:
        raise InputError(f"device is {device} but the model is on {own}; move one to the other")
    return device


class InterventionCache:
    """The model's logits on interventions of a part world, each forwarded once.

    A key is ``(index, removed part slots, removed clutter objects)`` (:func:`intervention_key`);
    ``(i, {}, {})`` is image ``i`` itself (``render(i)``). :meth:`request` queues keys,
    :meth:`compute` renders the queued ones with ``dataset.render`` and forwards them
    ``internal_batch_size`` at a time (model frozen: eval mode, no gradients), :meth:`fetch`
    returns logits (computing what is missing first). One cache serves every protocol and every
    explainer of one model on one dataset.

    Counters: ``forward_passes`` (images forwarded), ``forward_seconds`` (time in the model's
    forward, logits copied back included), ``render_seconds`` (time in ``dataset.render``, also
    for the images :meth:`originals` renders for explanations).
    """

    def __init__(self, model: nn.Module, dataset: PartWorld, internal_batch_size: int = DEFAULT_BATCH,
                 device: str | torch.device | None = None, progress: bool = False) -> None:
        self.model = check_model(model)
        self.dataset = _check_part_world(dataset)
        self.internal_batch_size = check_int(internal_batch_size, "internal_batch_size", 1)
        self.device = _model_device(model, device)
        self.progress = progress
        #: The world's number of classes (rows of ``dataset.config.class_table``): the model's logits.
        self.num_classes = len(self.dataset.config.class_table)
        self.forward_passes = 0
        self.forward_seconds = 0.0
        self.render_seconds = 0.0
        self._logits: dict[Key, torch.Tensor] = {}
        self._pending: dict[Key, None] = {}

    def __len__(self) -> int:
        return len(self._logits)

    def __contains__(self, key: object) -> bool:
        return key in self._logits

    def _check_key(self, key: Any) -> Key:
        n, m = len(self.dataset), self.dataset.config.background_objects
        if not (isinstance(key, tuple) and len(key) == 3 and isinstance(key[1], frozenset) and isinstance(key[2], frozenset)):
            raise InputError(f"an intervention key is (index, frozenset of parts, frozenset of clutter objects), got {key!r}")
        index, parts, clutter = key
        check_int(index, f"intervention index (the dataset has {n} images)", 0, n - 1)
        for k in parts:
            check_int(k, "intervention part slot", 0, NUM_PARTS - 1)
        for j in clutter:
            check_int(j, "intervention clutter object", 0, m - 1)
        return key

    def request(self, keys: Iterable[Key]) -> None:
        """Queue the keys that are not cached yet (nothing is rendered until :meth:`compute`)."""
        for key in keys:
            if self._check_key(key) not in self._logits:
                self._pending[key] = None

    def _render(self, key: Key) -> dict[str, Any]:
        start = time.perf_counter()
        index, parts, clutter = key
        item = self.dataset.render(index, remove_parts=sorted(parts), remove_background=sorted(clutter))
        self.render_seconds += time.perf_counter() - start
        return item

    def _forward(self, keys: list[Key], images: list[torch.Tensor]) -> None:
        batch = torch.stack(images).to(self.device)
        start = time.perf_counter()
        with frozen(self.model):
            logits = predict_logits(self.model, batch).float().cpu()
        self.forward_seconds += time.perf_counter() - start
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise InputError(f"the part protocols need a model with the part world's {self.num_classes} classes, "
                             f"got logits of shape {tuple(logits.shape)}")
        self.forward_passes += len(keys)
        for key, row in zip(keys, logits):
            self._logits[key] = row
            self._pending.pop(key, None)

    def compute(self) -> None:
        """Render and forward every queued key, ``internal_batch_size`` at a time."""
        pending = list(self._pending)
        step = self.internal_batch_size
        with progress_bar(total=len(pending), desc="interventions", unit="img", disable=not self.progress or not pending) as bar:
            for start in range(0, len(pending), step):
                chunk = pending[start:start + step]
                self._forward(chunk, [self._render(key)["image"] for key in chunk])
                bar.update(len(chunk))

    def fetch(self, keys: Iterable[Key]) -> torch.Tensor:
        """Logits ``(N, C)`` (float32, CPU; ``C`` = :attr:`num_classes`) of the keys, in order;
        missing ones are computed (with everything else queued)."""
        keys = list(keys)
        self.request(keys)
        if self._pending:
            self.compute()
        if not keys:
            return torch.empty(0, self.num_classes)
        return torch.stack([self._logits[key] for key in keys])

    def logits(self, key: Key) -> torch.Tensor:
        """Logits ``(C,)`` of one key."""
        return self.fetch([key])[0]

    def originals(self, indices: Sequence[int]) -> tuple[list[dict[str, Any]], torch.Tensor]:
        """The items ``render(i)`` (image, label, masks, ...) of ``indices`` and their logits
        ``(N, C)``; each item's image is forwarded only if its key ``(i, {}, {})`` is not cached
        yet, so that explaining an image and intervening on it share one forward pass."""
        keys = [intervention_key(i) for i in indices]
        for key in keys:
            self._check_key(key)
        items = [self._render(key) for key in keys]
        missing = {key: item["image"] for key, item in zip(keys, items) if key not in self._logits}
        todo = list(missing)
        for start in range(0, len(todo), self.internal_batch_size):
            chunk = todo[start:start + self.internal_batch_size]
            self._forward(chunk, [missing[key] for key in chunk])
        return items, torch.stack([self._logits[key] for key in keys])


def resolve_cache(model: nn.Module, dataset: Any, cache: InterventionCache | None, internal_batch_size: int,
                  progress: bool) -> InterventionCache:
    """``cache``, checked to be one of ``model`` on ``dataset``, or a new :class:`InterventionCache`."""
    check_model(model)
    _check_part_world(dataset)
    if cache is None:
        return InterventionCache(model, dataset, internal_batch_size, progress=progress)
    if not isinstance(cache, InterventionCache):
        raise InputError(f"cache must be an InterventionCache, got {type(cache).__name__}")
    if cache.model is not model or cache.dataset is not dataset:
        raise InputError("cache was built for another model or dataset; pass the same model and dataset objects")
    return cache
