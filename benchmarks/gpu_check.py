"""The GPU check: on a machine with one CUDA GPU, in under 8 minutes, run what sparsex does on a
GPU and print the figures as JSON (``benchmarks/gpu_check.sh`` calls this).

1. the tests marked ``gpu`` (``tests/test_gpu.py``: training, evaluation, explanations and the
   mask explainer on ``cuda``);
2. one SIDE run on cached Lite0 features of the part world (224 px, 2,400 training images) with
   mixed precision (``--amp``): feature extraction and training times, accuracy, local size;
3. ``sparsex explain attributions`` on 64 part-world images with every explainer that applies to
   an ImageNet classifier (integrated gradients, saliency, Grad-CAM, occlusion, per-image masks),
   scored: images/s per explainer;
4. ``torchrun`` with 2 processes on the one GPU (NCCL; where NCCL refuses two processes on one
   device, the outcome is recorded and the same run repeated with gloo).

    python benchmarks/gpu_check.py --out /tmp/gpu_check.json [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import parse_args, write_result

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start, done


def tail(done: subprocess.CompletedProcess) -> str:
    return (done.stdout + done.stderr).strip().splitlines()[-1][-300:] if (done.stdout + done.stderr).strip() else ""


def main() -> None:
    args = parse_args(__doc__, extra=lambda p: p.add_argument("--work", type=Path, default=Path("/tmp/sparsex-gpu-check"),
                                                             help="folder for the runs"))
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU; torch finds none")
    work, figures = args.work, {"gpu": torch.cuda.get_device_name()}
    train, images = (96, 8) if args.quick else (2400, 64)
    sparsex = [sys.executable, "-m", "sparsex"]

    seconds, done = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/test_gpu.py"])
    figures.update({"tests.seconds": round(seconds, 1), "tests.passed": done.returncode == 0, "tests.summary": tail(done)})

    seconds, done = timed([*sparsex, "train", "side", "--data", "parts", "--data-options", f"train_size={train}",
                           "--data-options", "test_size=480", "--backbone", "lite0", "--device", "cuda", "--amp",
                           "--out", str(work / "side"), "--overwrite", "--quiet"])
    figures.update({"side.seconds": round(seconds, 1), "side.ok": done.returncode == 0})
    if done.returncode == 0:
        final = json.loads((work / "side" / "metrics.json").read_text())["final"]
        figures.update({f"side.{k}": final[k] for k in ("accuracy", "local_size", "global_size", "ocla_score")})
    else:
        figures["side.error"] = tail(done)

    seconds, done = timed([*sparsex, "data", "make", "parts", "--out", str(work / "images"), "--train-size", "0",
                           "--val-size", "0", "--test-size", str(images), "--overwrite", "--quiet"])
    for explainer in ("integrated-gradients", "saliency", "gradcam", "occlusion", "per-image-mask"):
        seconds, done = timed([*sparsex, "explain", "attributions", "--model", "lite0-imagenet", "--images",
                               str(work / "images" / "test"), "--explainer", explainer, "--score", "--device", "cuda",
                               "--out", str(work / f"explained-{explainer}"), "--overwrite", "--quiet"])
        figures[f"explain.{explainer}.images_per_s"] = round(images / seconds, 2) if done.returncode == 0 else None
        if done.returncode != 0:
            figures[f"explain.{explainer}.error"] = tail(done)

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sparsex",
                "train", "classifier", "--data", "parts", "--data-options", "train_size=96", "--data-options",
                "test_size=24", "--backbone", "small-cnn", "--data-options", "image_size=48", "--epochs", "2",
                "--device", "cuda", "--overwrite", "--quiet", "--out"]
    seconds, done = timed([*torchrun, str(work / "ddp-nccl")])
    figures.update({"torchrun.nccl.ok": done.returncode == 0, "torchrun.nccl.seconds": round(seconds, 1)})
    if done.returncode != 0:
        figures["torchrun.nccl.error"] = tail(done)
        seconds, done = timed([*torchrun, str(work / "ddp-gloo")], env={"SPARSEX_DDP_BACKEND": "gloo"})
        figures.update({"torchrun.gloo.ok": done.returncode == 0, "torchrun.gloo.seconds": round(seconds, 1)})
    result = write_result(args.out, args.quick, figures)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
