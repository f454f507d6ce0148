"""Data-parallel runs on PyTorch's own engine: ``torchrun`` launches the processes,
``torch.distributed`` connects them (gloo on the CPU, NCCL on GPUs) and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients.

Launch any trainer with ``torchrun --nproc_per_node N ...`` (or ``--nnodes M`` with torchrun's c10d
rendezvous); torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` and :func:`init` joins the
process group from them. Without them (or with ``WORLD_SIZE=1``) nothing here creates a process
group and every helper is the identity or a no-op, so a single-process run is exactly what it
was. Under torchrun every rank runs the whole program; what differs:

- each global batch (``batch_size`` items, the same on every rank) is split over the ranks by
  :func:`local_batches`, like :class:`~torch.utils.data.DistributedSampler` on a permutation that
  every rank draws from the same seed, so the update equals a single process's on the same batch;
- only rank 0 writes shared files (:func:`main_only`; checkpoints, ``metrics.json``, figures,
  cache manifests) while the others wait at a barrier, and decisions read from the file system
  are rank 0's (:func:`from_main`), so no rank races ahead or sees another state of the run;
- loss sums are reduced over the ranks (:func:`all_reduce_sum`).

``SPARSEX_DDP_BACKEND`` (``nccl`` or ``gloo``) overrides the backend; with gloo, more processes
than GPUs share them round-robin (NCCL refuses two processes on one GPU).

Run folders and feature caches must be on a file system every rank sees (one machine, or a
shared mount across nodes).
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import SparsexError

T = TypeVar("T")
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True when torchrun (or an equivalent launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`; a name torch does not know, or CUDA on a machine
    without a GPU, raises :class:`SparsexError` (one line instead of an error deep inside torch)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise SparsexError(f"unknown device {device!r}; use cpu or cuda") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise SparsexError(f"device {device!r} asked for, but torch finds no CUDA GPU on this machine; use cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise SparsexError(f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return parsed


def init(device: str | torch.device = "cpu") -> bool:
    """Join the process group torchrun set up, once per process; return whether this is a
    distributed run.

    The backend is NCCL when ``device`` is a GPU (each rank then uses ``cuda:LOCAL_RANK``, made the
    current device, so ``"cuda"`` names it everywhere) and gloo otherwise. A single process
    (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) returns False and creates nothing.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if not launched():
        return False
    missing = [name for name in ENV if name not in os.environ]
    if missing:
        raise SparsexError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set; launch with torchrun")
    if not dist.is_available():
        raise SparsexError("this torch build has no torch.distributed; run a single process")
    parsed = check_device(device)
    backend = os.environ.get("SPARSEX_DDP_BACKEND") or ("nccl" if parsed.type == "cuda" else "gloo")
    if backend not in ("nccl", "gloo"):
        raise SparsexError(f"SPARSEX_DDP_BACKEND must be nccl or gloo, got {backend!r}")
    if parsed.type == "cuda":
        if parsed.index is not None:
            raise SparsexError(f"under torchrun every process uses the GPU of its LOCAL_RANK; pass device cuda, not {device}")
        local, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= gpus and backend == "nccl":
            raise SparsexError(f"LOCAL_RANK {local} but this machine has {gpus} GPU(s) and NCCL needs one per process; "
                               f"start at most {gpus} processes per node, or share the GPUs with SPARSEX_DDP_BACKEND=gloo")
        torch.cuda.set_device(local % gpus)  # with gloo, processes beyond the GPU count share them round-robin
    elif backend == "nccl":
        raise SparsexError("SPARSEX_DDP_BACKEND=nccl needs --device cuda")
    dist.init_process_group(backend)
    atexit.register(cleanup)
    return True


def cleanup() -> None:
    """Leave the process group (at exit; safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """The number of processes (1 in a single process)."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes shared files and shows progress."""
    return rank() == 0


def _nccl() -> bool:
    return dist.get_backend() == dist.Backend.NCCL


def barrier() -> None:
    """Wait until every rank is here (nothing in a single process)."""
    if _active():
        dist.barrier(device_ids=[torch.cuda.current_device()] if _nccl() else None)


def main_only(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call ``fn`` on rank 0 only (a write of shared files: a checkpoint, ``metrics.json``, a
    figure), then hold every rank at a barrier so none reads what is not written yet or races
    ahead. Returns ``fn``'s result on rank 0 and None on the others."""
    result = fn(*args, **kwargs) if is_main() else None
    barrier()
    return result


def main_first(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` on rank 0, then (after a barrier) on the other ranks; return its result on every
    rank. For opening shared state that rank 0 must create or check first (a run folder)."""
    result = fn(*args, **kwargs) if is_main() else None
    barrier()
    return result if is_main() else fn(*args, **kwargs)


def from_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(...)`` as rank 0 computes it, on every rank (a broadcast): for decisions read from the
    file system that rank 0 may change right after (which stage to resume, whether a cache is
    complete), so that every rank takes the same branch."""
    if not _active():
        return fn(*args, **kwargs)
    box = [fn(*args, **kwargs) if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: Mapping[str, float] | Sequence[float]) -> Any:
    """Sum numbers over the ranks (float64): a dict gives a dict with the same keys (every rank must
    pass the same keys in the same order), a sequence a list. Unchanged in a single process."""
    keys = list(values) if isinstance(values, Mapping) else None
    numbers = [float(values[k]) for k in keys] if keys is not None else [float(v) for v in values]
    if _active():
        tensor = torch.tensor(numbers, dtype=torch.float64, device="cuda" if _nccl() else "cpu")
        dist.all_reduce(tensor)
        numbers = tensor.tolist()
    return dict(zip(keys, numbers)) if keys is not None else numbers


def all_reduce_mean(values: Mapping[str, float] | Sequence[float]) -> Any:
    """Mean of numbers over the ranks (:func:`all_reduce_sum` divided by the world size)."""
    summed = all_reduce_sum(values)
    n = world_size()
    return {k: v / n for k, v in summed.items()} if isinstance(summed, dict) else [v / n for v in summed]


def check_batch_size(batch_size: int, name: str = "batch_size") -> None:
    """The global batch must split evenly over the ranks (every rank runs ``batch_size / N`` items)."""
    n = world_size()
    if batch_size % n:
        raise SparsexError(f"{name} {batch_size} is the global batch and must split evenly over {n} processes "
                           f"(a multiple of {n})")


def shard_indices(items: T) -> T:
    """This rank's share of ``items`` (a tensor or a list): every ``N``-th item from its rank on, as
    :class:`~torch.utils.data.DistributedSampler` deals them. The shares of all ranks are disjoint
    and cover ``items``; a single process gets ``items`` itself."""
    n = world_size()
    return items if n == 1 else items[rank()::n]


class LocalBatch(NamedTuple):
    """This rank's part of one global batch.

    ``indices``: the items to run (never empty). ``count``: how many of them are real; 0 when the
    global batch has fewer items than ranks and this rank has none: it then runs the batch's first
    item at weight 0, which keeps it in DDP's gradient all-reduce without changing the sum.
    ``weight``: the factor for the slice's mean loss, ``N * count / len(global batch)``, so that
    DDP's average of the ranks' gradients is the gradient of the global batch's mean loss (1 when
    the slices are equal, as in every full batch).
    """

    indices: torch.Tensor
    count: int
    weight: float


def local_batches(order: torch.Tensor, batch_size: int) -> Iterator[LocalBatch]:
    """Split an epoch's order of item indices (the same on every rank: draw it from the same seed)
    into global batches of ``batch_size`` and yield this rank's part of each (:class:`LocalBatch`).

    With a loss that is a mean over items, DDP's averaged update equals a single process's on the
    same global batch, the last, partial one included (it is weighted, not dropped or padded).
    """
    check_batch_size(batch_size)
    n = world_size()
    for batch in order.split(batch_size):
        if n == 1:
            yield LocalBatch(batch, len(batch), 1.0)
            continue
        mine = shard_indices(batch)
        if len(mine) == 0:
            yield LocalBatch(batch[:1], 0, 0.0)
        else:
            yield LocalBatch(mine, len(mine), 1.0 if len(mine) * n == len(batch) else n * len(mine) / len(batch))


def wrap(model: nn.Module) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` when there are several
    ranks (its parameters and buffers are broadcast from rank 0, its gradients averaged over the
    ranks in ``backward``); ``model`` itself in a single process. Call the wrapper in the training
    step and keep using ``model`` for everything else (its weights are the wrapper's)."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
