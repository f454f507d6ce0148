"""``sparsex demo``: the project's main job on an embedded default, end to end.

1. a small part world (procedural: nothing to download; the images are rendered on the fly);
2. three models on the same cached features of a frozen Lite0 (extracted once): a plain
   classifier (linear probe) and the self-explainable SIDE and ProtoS-ViT heads, each through
   :func:`sparsex.train.train_model`;
3. :func:`sparsex.evaluate.evaluate` of each model: the classifier with integrated gradients and
   Grad-CAM, each prototype model with its own prototype evidence;
4. ``report.html``: one self-contained page that opens with the same test images explained by
   every model and explainer beside the true part masks, then the scores of every row.

The sizes (:class:`DemoConfig`) make each model's numbers mean something within minutes on two
CPU cores: 160-pixel images (Lite0's 5 x 5 feature maps; at 128 px the probe reached 83% and
ProtoS-ViT 77%), 1,200 training images, and a ProtoS-ViT head scaled to them (below). Every step
writes its own folder under ``out`` and is skipped when it is complete, so an interrupted demo
resumes where it stopped (the trainers resume between stages too). :meth:`DemoConfig.quick`
shrinks everything to a smoke test whose numbers mean nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .io import read_json, write_json

#: the models the demo trains, in order: each is a registered trainer and a folder of the demo
MODELS = ("classifier", "side", "protosvit")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and settings of the demo (``settings``: each trainer's own, beside the shared data,
    backbone and feature cache).

    ProtoS-ViT's library defaults (300 prototypes of dimension 256, softmax temperature 0.1) are
    those of the 224-px benchmark (7 x 7 maps, 2,400 images); on the demo's 5 x 5 maps of 1,200
    images they reached 84% against the probe's 90%, so the demo uses 100 prototypes of dimension
    64 at temperature 0.3 for 60 epochs (90% on the demo world's test split; chosen on another
    world seed's test split, docs/methods.md). The probe trains 30 epochs (100 overfit: 89%).
    """

    image_size: int = 160
    train_size: int = 1200
    val_size: int = 240  # held-out images SIDE's offset stage chooses its logit shift on
    test_size: int = 240
    eval_images: int = 64  # test images every explainer is scored on (protocols, figures)
    auc_images: int = 32  # of those, the first N for the deletion / insertion curves (21 forwards each)
    backbone: str = "lite0"
    ig_steps: int = 16
    settings: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "classifier": {"mode": "probe", "epochs": 30, "lr": 1e-2},
        "side": {"pretrain_epochs": 20, "finetune_epochs": 10, "calibrate_epochs": 20, "expanded_channels": 128},
        "protosvit": {"epochs": 60, "num_prototypes": 100, "embed_dim": 64, "temperature": 0.3},
    })
    quick: bool = False  # a smoke test: tiny sizes, numbers that mean nothing

    @classmethod
    def smoke_test(cls) -> "DemoConfig":
        """Tiny sizes for smoke tests (the small CNN backbone, 48-pixel images, a minute)."""
        return cls(image_size=48, train_size=96, val_size=24, test_size=24, eval_images=8, auc_images=4, backbone="small-cnn",
                   ig_steps=4, quick=True, settings={
                       "classifier": {"epochs": 2},
                       "side": {"pretrain_epochs": 2, "finetune_epochs": 1, "calibrate_epochs": 1, "expanded_channels": 6,
                                "prune_k": 7},
                       "protosvit": {"epochs": 2, "num_prototypes": 12, "embed_dim": 8, "hoyer_warmup_epochs": 1},
                   })

    @property
    def data_options(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "train_size": self.train_size, "val_size": self.val_size,
                "test_size": self.test_size}


def run_demo(out: str | os.PathLike, config: DemoConfig | None = None, progress: bool = True,
             device: str = "cpu") -> dict[str, Any]:
    """Run (or resume) the demo in ``out`` on ``device``; return ``{"rows": ..., "report": path,
    "seconds": ..., "quick": bool}``."""
    from .evaluate import EvaluateConfig, evaluate, write_combined_report
    from .train import train_model

    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    write_json(out / "demo.json", asdict(config))
    shared = dict(data="parts", data_options=config.data_options, backbone=config.backbone,
                  image_size=config.image_size, cache_dir=str(out / "features"), device=device)
    results = []
    for name in MODELS:
        train_model(name, out / name, progress=progress, **shared, **config.settings[name])
        evaluated = out / f"eval-{name}"
        if not (evaluated / "metrics.json").is_file():
            settings = {"integrated-gradients": {"n_steps": config.ig_steps}} if name == "classifier" else {}
            evaluate(EvaluateConfig(model=str(out / name), explainers=list(settings) + (["gradcam"] if settings else []),
                                    explainer_settings=settings, limit=config.eval_images, auc_limit=config.auc_images,
                                    device=device),
                     evaluated, overwrite=True, progress=progress)
        results.append(read_json(evaluated / "metrics.json", "evaluation"))
    title = "sparsex demo: the part world" + (" (quick: a smoke test, its numbers mean nothing)" if config.quick else "")
    report = write_combined_report(out / "report.html", [out / f"eval-{name}" for name in MODELS], title=title)
    rows = {name: row for result in results for name, row in result["rows"].items()}
    return {"rows": rows, "report": str(report), "seconds": time.perf_counter() - began, "quick": config.quick}
