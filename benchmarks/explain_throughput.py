"""Explaining image files through sparsex against captum called directly: images/s of each
attribution explainer on ``lite0-imagenet`` (224 px) through ``sparsex explain attributions``
(:func:`sparsex.explain_files.explain_files`: reading and cropping the files, the explainer,
writing maps, overlays, a grid and a JSON per image), side by side with the same captum method on
the same model, images and batches, in the same process, rounds alternating. Figures (medians
over the rounds):

- ``<explainer>.captum_images_per_s``: captum called directly on preloaded tensors, targets given;
- ``<explainer>.attribute_images_per_s`` and ``<explainer>.attribute_overhead`` (= time / captum
  time - 1, the median of the rounds' ratios; the bar is 10%): the library's explainer,
  ``create_explainer(name, model).attribute(x, target=t)``, on the same tensors;
- ``<explainer>.command_images_per_s`` and ``<explainer>.command_overhead``: the whole command
  (:func:`~sparsex.explain_files.explain_files`), which also reads the files, predicts the classes
  and writes maps, overlays, a grid and a JSON per image.

    python benchmarks/explain_throughput.py --images 8 --out benchmarks/results/explain_throughput.json
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import parse_args, write_result
from captum.attr import IntegratedGradients, LayerGradCam, Occlusion, Saliency

from sparsex import create_explainer, load_classifier
from sparsex.explain_files import ExplainFilesConfig, explain_files
from sparsex.inference import DEFAULT_BATCH
from sparsex.partworld import PartWorldConfig, write_parts_tree
from sparsex.perturb import blur

EXPLAINERS = ("integrated-gradients", "saliency", "gradcam", "occlusion")


def captum_maps(name: str, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The explainer's computation with captum directly (sparsex's defaults: 50 Gauss-Legendre steps
    from the blurred image; |gradient| max over channels; the last conv of the feature extractor,
    upsampled; 28-px windows with stride 14 replaced by the blurred image)."""
    if name == "integrated-gradients":
        return IntegratedGradients(model).attribute(x, baselines=blur(x), target=target, n_steps=50,
                                                    method="gausslegendre", internal_batch_size=DEFAULT_BATCH).sum(1, keepdim=True)
    if name == "saliency":
        return Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True).amax(1, keepdim=True)
    if name == "gradcam":
        layer = [m for m in model.module.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        return F.interpolate(cam, size=x.shape[2:], mode="bilinear").clamp_min(0)
    window, stride = math.ceil(x.shape[-1] / 8), math.ceil(x.shape[-1] / 8) // 2
    with torch.no_grad():  # DEFAULT_BATCH images per forward pass: len(x) images x the windows that fit
        return Occlusion(model).attribute(x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                                          baselines=blur(x), target=target,
                                          perturbations_per_eval=max(1, DEFAULT_BATCH // len(x))).mean(1, keepdim=True)


def main() -> None:
    def extra(parser):
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--images", type=int, default=8, help="image files explained per round")

    args = parse_args(__doc__, extra=extra)
    n, rounds = (4, 1) if args.quick else (args.images, args.rounds)
    work = Path(tempfile.mkdtemp(prefix="sparsex-throughput-"))
    try:
        write_parts_tree(work / "world", PartWorldConfig(image_size=224, train_size=0, val_size=0, test_size=n),
                         progress=False)
        images_dir = work / "world" / "test"
        model = load_classifier("lite0-imagenet")
        files = sorted(images_dir.rglob("*.png"))
        images = torch.stack([model.preprocess.load(f) for f in files])
        with torch.no_grad():
            targets = torch.cat([model(x).argmax(1) for x in images.split(DEFAULT_BATCH)])
        figures: dict = {"settings.images": n, "settings.batch": DEFAULT_BATCH, "settings.rounds": rounds}
        for name in EXPLAINERS:
            explainer = create_explainer(name, model)
            times: dict[str, list[float]] = {"captum": [], "attribute": [], "command": []}
            captum_maps(name, model, images[:1], targets[:1])  # warm-up: first-call costs out of the rounds
            explainer.attribute(images[:1], target=targets[:1])
            for round_ in range(rounds):
                start = time.perf_counter()
                for x, t in zip(images.split(DEFAULT_BATCH), targets.split(DEFAULT_BATCH)):
                    captum_maps(name, model, x, t)
                times["captum"].append(time.perf_counter() - start)
                start = time.perf_counter()
                for x, t in zip(images.split(DEFAULT_BATCH), targets.split(DEFAULT_BATCH)):
                    explainer.attribute(x, target=t)
                times["attribute"].append(time.perf_counter() - start)
                out = work / f"out-{name}-{round_}"
                start = time.perf_counter()
                explain_files(ExplainFilesConfig(model="lite0-imagenet", images=str(images_dir), explainers=[name]), out,
                              progress=False, classifier=model)
                times["command"].append(time.perf_counter() - start)
                shutil.rmtree(out)
            for kind, seconds in times.items():
                figures[f"{name}.{kind}_images_per_s"] = round(n / statistics.median(seconds), 3)
            for kind in ("attribute", "command"):
                ratios = [s / c for s, c in zip(times[kind], times["captum"])]
                figures[f"{name}.{kind}_overhead"] = round(statistics.median(ratios) - 1, 4)
        write_result(args.out, args.quick, figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
