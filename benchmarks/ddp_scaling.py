"""Data-parallel scaling: training throughput with 1 and 2 processes (torchrun, gloo, one CPU thread each).

    python benchmarks/ddp_scaling.py --out RESULT.json [--quick]

The workload is the classifier trainer's end-to-end loop (``sparsex train classifier --backbone
small-cnn``: the small CNN and a linear head, cross-entropy, Adam, :func:`sparsex.train.loop.train_epochs`)
on random 28x28 grey images, Fashion-MNIST's size, with the global batch of 64: per-step compute
dominates and the gradient all-reduce is small (57k parameters). Each setting is one launch of
``python -m torch.distributed.run --standalone --nproc_per_node P`` on this script's ``--worker``
mode with ``OMP_NUM_THREADS=1`` (one core per process): a warm-up epoch on 512 images, then timed
epochs over the images, each between barriers on rank 0.

A shared machine makes single timings noisy, so the settings alternate (P = 1, 2, 1, 2, ...) and
each figure is the best epoch of all launches of its setting (the one least disturbed); every
epoch's rate is listed too. Reports ``ddp.images_per_s.np1``, ``ddp.images_per_s.np2``,
``ddp.speedup`` (np2 / np1) and the final training loss of each (close, not equal: the small
CNN's BatchNorm sees each rank's half batch).
"""

from __future__ import annotations

import sparsex  # noqa: F401  (first, before torch: its runtime settings, sparsex.runtime)

# isort: split
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import parse_args, write_result

from sparsex import distributed
from sparsex.backbones import create_backbone
from sparsex.io import write_json
from sparsex.models.classifier import ImageClassifier, LinearProbe
from sparsex.train.loop import train_epochs

BATCH = 64
LR = 1e-3
WARMUP = 512


def sizes(quick: bool) -> tuple[int, int, int]:
    """``(images, timed epochs per launch, launches per setting)``."""
    return (512, 1, 1) if quick else (4096, 3, 2)


def cross_entropy(logits, labels, _epoch):
    return F.cross_entropy(logits, labels)


def worker(args: argparse.Namespace) -> None:
    """One rank: train, time each epoch; rank 0 writes ``{"rates": images/s per epoch, ...}`` to ``--out``."""
    distributed.init("cpu")
    n, epochs, _ = sizes(args.quick)
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)
    torch.manual_seed(0)
    backbone = create_backbone("small-cnn", freeze=False, seed=0)
    model = ImageClassifier(backbone, LinearProbe(backbone.info.channels, 10))
    train_epochs(model, cross_entropy, images[:WARMUP], labels[:WARMUP], 1, LR, BATCH, progress=False)
    rates = []
    for epoch in range(epochs):
        distributed.barrier()
        start = time.perf_counter()
        history = train_epochs(model, cross_entropy, images, labels, 1, LR, BATCH, seed=1 + epoch, progress=False)
        rates.append(n / (time.perf_counter() - start))  # train_epochs ends with an all-reduce: the ranks are in step
    if distributed.is_main():
        write_json(args.out, {"rates": rates, "processes": distributed.world_size(), "threads": torch.get_num_threads(),
                              "final_loss": history[-1]})


def launch(processes: int, quick: bool) -> dict:
    """Run the worker under torchrun with ``processes`` processes; its timing JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timing.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                   __file__, "--worker", "--out", str(out)] + (["--quick"] if quick else [])
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(out.read_text())


def main() -> None:
    args = parse_args(__doc__, extra=lambda p: p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS))
    if args.worker:
        worker(args)
        return
    n, epochs, launches = sizes(args.quick)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(launches):
        for processes in runs:
            runs[processes].append(launch(processes, args.quick))
    rates = {p: [r for run in launched for r in run["rates"]] for p, launched in runs.items()}
    rate = {p: max(r) for p, r in rates.items()}
    write_result(args.out, args.quick, {
        "ddp.workload": "small-cnn classifier trained end to end (train_epochs), random 28x28 grey images",
        "ddp.backend": "gloo",
        "ddp.threads_per_process": runs[1][0]["threads"],
        "ddp.images": n,
        "ddp.global_batch": BATCH,
        "ddp.launches_per_setting": launches,
        "ddp.timed_epochs_per_launch": epochs,
        "ddp.images_per_s.np1": round(rate[1], 1),
        "ddp.images_per_s.np2": round(rate[2], 1),
        "ddp.speedup": round(rate[2] / rate[1], 3),
        "ddp.epoch_images_per_s.np1": [round(r, 1) for r in rates[1]],
        "ddp.epoch_images_per_s.np2": [round(r, 1) for r in rates[2]],
        "ddp.final_loss.np1": round(runs[1][-1]["final_loss"], 4),
        "ddp.final_loss.np2": round(runs[2][-1]["final_loss"], 4),
    })


if __name__ == "__main__":
    main()
