"""One generic training loop over in-memory (cached) features, and batched inference."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

LossFn = Callable[[Any, torch.Tensor, float], torch.Tensor]


def train_epochs(model: nn.Module, loss_fn: LossFn, features: torch.Tensor, labels: torch.Tensor, epochs: int,
                 lr: float, batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu",
                 progress: bool = True, desc: str = "train") -> list[float]:
    """Train ``model`` with Adam for ``epochs`` passes over ``features (N, ...)`` / ``labels (N,)``.

    ``loss_fn(model(batch), batch_labels, epoch)`` gives the scalar loss; ``epoch`` is the number
    of epochs done so far, fractional within an epoch (for loss terms ramped in over a warm-up).
    After every optimiser step, a model with a ``constrain()`` method has it called (e.g. to clamp
    weights to be non-negative, a projected gradient step). Batches are reshuffled every epoch from
    ``seed + epoch``, so a run is reproducible. Returns the mean loss of each epoch.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    constrain = getattr(model, "constrain", None)
    optimiser = torch.optim.Adam(params, lr=lr)
    n = features.shape[0]
    steps = (n + batch_size - 1) // batch_size
    history: list[float] = []
    model.train()
    with tqdm(total=epochs * steps, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
            total = 0.0
            for step, idx in enumerate(order.split(batch_size)):
                loss = loss_fn(model(features[idx].to(device, torch.float32)), labels[idx].to(device), epoch + step / steps)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if constrain is not None:
                    constrain()
                total += loss.item() * len(idx)
                bar.update()
            history.append(total / n)
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
