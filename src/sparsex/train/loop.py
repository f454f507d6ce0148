"""One generic training loop over in-memory (cached) features, batched inference, and what every
trainer's loop shares: mixed precision (:class:`MixedPrecision`) and a run folder that the ranks
of a distributed run share (:func:`open_run`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from .. import distributed
from ..progress import progress_bar
from .run import RunFolder

if TYPE_CHECKING:
    from .base import TrainConfig

LossFn = Callable[[Any, torch.Tensor, float], torch.Tensor]


class MixedPrecision:
    """Mixed precision for training steps (``amp``): the forward pass and the loss under
    :func:`torch.autocast` in bfloat16 (on the CPU, and on GPUs that have it) or float16 with a
    gradient scaler (older GPUs). Disabled, :meth:`autocast` does nothing and :meth:`step` is
    ``zero_grad``, ``backward``, ``step``, so a run without ``amp`` is unchanged. On the CPU
    bfloat16 is mostly a memory saving: it is faster only on processors with bfloat16 units."""

    def __init__(self, device: str | torch.device, enabled: bool = False) -> None:
        self.device_type = torch.device(device).type
        bf16 = self.device_type != "cuda" or torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.enabled = enabled
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=enabled and not bf16)

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def step(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
        """Backward pass of ``loss`` and one optimiser step (scaled and unscaled as float16 needs)."""
        optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimiser)
        self.scaler.update()


def open_run(out: str | os.PathLike, config: TrainConfig, stages: list[str], overwrite: bool = False) -> RunFolder:
    """The :class:`RunFolder` ``out`` of ``config`` (stored as ``config.to_dict()``; a stored config
    is first read back through ``from_dict``, so a setting added since a run started takes its
    default and the run resumes), shared by every rank of a distributed run: rank 0 checks,
    clears (``overwrite``) and creates it first; the other ranks then open it and never clear it."""
    def upgrade(stored: dict[str, Any]) -> dict[str, Any]:
        return type(config).from_dict(stored).to_dict()

    return distributed.main_first(lambda: RunFolder(out, config.to_dict(), stages, overwrite=overwrite and distributed.is_main(),
                                                    upgrade=upgrade))


def train_epochs(model: nn.Module, loss_fn: LossFn, features: torch.Tensor, labels: torch.Tensor, epochs: int,
                 lr: float, batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu",
                 progress: bool = True, desc: str = "train", amp: bool = False) -> list[float]:
    """Train ``model`` with Adam for ``epochs`` passes over ``features (N, ...)`` / ``labels (N,)``.

    ``loss_fn(model(batch), batch_labels, epoch)`` gives the scalar loss; ``epoch`` is the number
    of epochs done so far, fractional within an epoch (for loss terms ramped in over a warm-up).
    After every optimiser step, a model with a ``constrain()`` method has it called (e.g. to clamp
    weights to be non-negative, a projected gradient step). Batches are reshuffled every epoch from
    ``seed + epoch``, so a run is reproducible. ``amp``: :class:`MixedPrecision`. Returns the mean
    loss of each epoch.

    Under torchrun the model runs in DistributedDataParallel and each rank takes its part of every
    global batch of ``batch_size`` items (:func:`sparsex.distributed.local_batches`); for a loss
    that is a mean over items the weights after every step equal a single process's (within float
    rounding), and the returned losses are reduced over the ranks.
    """
    distributed.init(device)
    params = [p for p in model.parameters() if p.requires_grad]
    constrain = getattr(model, "constrain", None)
    optimiser = torch.optim.Adam(params, lr=lr)
    precision = MixedPrecision(device, amp)
    net = distributed.wrap(model)
    n = features.shape[0]
    steps = (n + batch_size - 1) // batch_size
    history: list[float] = []
    model.train()
    with progress_bar(total=epochs * steps, desc=desc, unit="step", disable=not (progress and distributed.is_main()),
              leave=False) as bar:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
            total = 0.0
            for step, part in enumerate(distributed.local_batches(order, batch_size)):
                with precision.autocast():
                    loss = loss_fn(net(features[part.indices].to(device, torch.float32)), labels[part.indices].to(device),
                                   epoch + step / steps)
                precision.step(loss if part.weight == 1.0 else loss * part.weight, optimiser)
                if constrain is not None:
                    constrain()
                total += loss.item() * part.count
                bar.update()
            history.append(distributed.all_reduce_sum([total])[0] / n)
            bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]:.4f}")
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, features: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu",
            keys: tuple[str, ...] = ("logits", "scores")) -> dict[str, torch.Tensor]:
    """Run ``model`` over ``features`` in batches; concatenate the named output fields (on the CPU).
    A model that returns a bare tensor (a plain classifier) has it read as ``logits``."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for batch in features.split(batch_size):
        out = model(batch.to(device, torch.float32))
        for k in keys:
            parts[k].append((out if isinstance(out, torch.Tensor) and k == "logits" else getattr(out, k)).cpu())
    return {k: torch.cat(v) for k, v in parts.items()}
