"""sparsex on a shared CPU machine: the demo's phases, idle and beside other CPU jobs, with and
without sparsex's runtime settings (sparsex.runtime: a short OpenMP spin, malloc that keeps
activations in the heap) and its small default batch (sparsex.inference.DEFAULT_BATCH).

Each measurement runs in a fresh process (the OpenMP setting only acts before torch loads), as
``before`` (``SPARSEX_TUNE=0``, batches of 64: sparsex until this release) or ``after`` (the
defaults), on an idle machine and beside ``--jobs`` single-threaded busy loops. Phases, on the
demo's sizes (Lite0 at 160 px, 24 classes): feature extraction (images/s), a ProtoS-ViT head's
training step on cached 5 x 5 features (steps/s), integrated gradients with 16 steps (images/s)
and part-world rendering (images/s). Figures: ``<config>.<load>.<phase>`` (median of the rounds),
``ratio.<config>.<phase>.loaded_vs_idle`` (idle rate / loaded rate: how many times slower under
load) and ``speedup.<load>.<phase>.after_vs_before``. With ``--demo`` also the whole ``sparsex
demo`` with the defaults, idle and loaded (``demo.idle_s``, ``demo.loaded_s``, their ratio).

    python benchmarks/shared_machine.py --out benchmarks/results/shared_machine.json --demo
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from _common import parse_args, write_result

PHASES = ("extract", "head_step", "integrated_gradients", "render")
CONFIGS = {"before": {"SPARSEX_TUNE": "0", "BATCH": "64"}, "after": {"BATCH": "16"}}

# One phase, in a fresh process: prints {"phase": rate}. BATCH: images per forward pass.
PHASE_SCRIPT = r'''
import json, os, sys, time
import sparsex, torch
import torch.nn.functional as F
from sparsex.backbones import create_backbone
from sparsex.explainers import create_explainer
from sparsex.models import create_model
from sparsex.models.classifier import ImageClassifier, LinearProbe

phase, n, batch = sys.argv[1], int(sys.argv[2]), int(os.environ["BATCH"])

def rate(fn, items):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n * items / (time.perf_counter() - start)

backbone = create_backbone("lite0", image_size=160).eval()
images = torch.rand(32, 3, 160, 160)
if phase == "extract":
    with torch.no_grad():
        value = rate(lambda: [backbone.extract(x) for x in images.split(batch)], len(images))
elif phase == "head_step":
    head = create_model("protosvit", in_channels=1280, num_classes=24, num_prototypes=100, embed_dim=64)
    features, labels = torch.randn(64, 1280, 5, 5), torch.randint(0, 24, (64,))
    optimiser = torch.optim.Adam(head.parameters(), 1e-3)
    def step():
        loss = F.cross_entropy(head(features).logits, labels)
        optimiser.zero_grad(); loss.backward(); optimiser.step()
    value = rate(lambda: [step() for _ in range(10)], 10)
elif phase == "integrated_gradients":
    model = ImageClassifier(backbone, LinearProbe(1280, 24)).eval()
    ig = create_explainer("integrated-gradients", model, n_steps=16, internal_batch_size=batch)
    value = rate(lambda: ig.attribute(images[:8]), 8)
else:
    world = sparsex.create_dataset("parts", split="train", image_size=160, train_size=64)
    value = rate(lambda: [world[i] for i in range(32)], 32)
print(json.dumps({phase: value}))
'''


@contextmanager
def busy_loops(jobs: int) -> Iterator[None]:
    """``jobs`` single-threaded busy loops beside the measurement (none for 0)."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(jobs)]
    try:
        if loops:
            time.sleep(2)
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def measure(phase: str, config: str, rounds: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARSEX_TUNE", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(CONFIGS[config])
    values = []
    for _ in range(rounds):
        result = subprocess.run([sys.executable, "-c", PHASE_SCRIPT, phase, "2" if rounds == 1 else "4"], env=env,
                                capture_output=True, text=True, check=True)
        values.append(json.loads(result.stdout.strip().splitlines()[-1])[phase])
    return statistics.median(values)


def demo_seconds(quick: bool, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, busy_loops(jobs):
        start = time.perf_counter()
        subprocess.run(["sparsex", "demo", "--out", str(Path(tmp) / "demo"), "--quiet", *(["--quick"] if quick else [])],
                       check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    args = parse_args(__doc__, extra=lambda p: (
        p.add_argument("--jobs", type=int, default=2, help="single-threaded busy loops beside the loaded runs"),
        p.add_argument("--rounds", type=int, default=3, help="fresh processes per measurement (the median is kept)"),
        p.add_argument("--demo", action="store_true", help="also time the whole demo, idle and loaded")))
    rounds = 1 if args.quick else args.rounds
    phases = PHASES[:2] if args.quick else PHASES
    figures: dict = {"settings.jobs": args.jobs, "settings.rounds": rounds}
    for load, jobs in (("idle", 0), ("loaded", args.jobs)):
        with busy_loops(jobs):
            for config in CONFIGS:
                for phase in phases:
                    figures[f"{config}.{load}.{phase}"] = round(measure(phase, config, rounds), 2)
    for phase in phases:
        for config in CONFIGS:
            figures[f"ratio.{config}.{phase}.loaded_vs_idle"] = round(
                figures[f"{config}.idle.{phase}"] / figures[f"{config}.loaded.{phase}"], 2)
        for load in ("idle", "loaded"):
            figures[f"speedup.{load}.{phase}.after_vs_before"] = round(
                figures[f"after.{load}.{phase}"] / figures[f"before.{load}.{phase}"], 2)
    if args.demo:
        figures["demo.idle_s"] = round(demo_seconds(args.quick, 0), 1)
        figures["demo.loaded_s"] = round(demo_seconds(args.quick, args.jobs), 1)
        figures["ratio.demo.loaded_vs_idle"] = round(figures["demo.loaded_s"] / figures["demo.idle_s"], 2)
    write_result(args.out, args.quick, figures)


if __name__ == "__main__":
    main()
