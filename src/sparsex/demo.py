"""``sparsex demo``: the project's main job on an embedded default, end to end.

1. a small part world (procedural: nothing to download; the images are rendered on the fly);
2. a plain classifier (frozen Lite0 + linear probe) and the self-explainable models (SIDE and
   ProtoS-ViT heads on the same cached Lite0 features);
3. :func:`sparsex.evaluate.evaluate` of each model: the classifier with integrated gradients and
   Grad-CAM, each prototype model with its own prototype evidence;
4. ``report.html``: one self-contained page with every row side by side (table, radar plot) and
   links to each model's own report.

Every step writes its own folder under ``out`` and is skipped when it is already complete, so an
interrupted demo resumes where it stopped (the trainers resume between stages too). ``quick``
shrinks everything (tiny images, the small CNN backbone) for smoke tests.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .io import read_json, write_json

#: (folder, trainer) of the models the demo trains, in order
MODELS = ("classifier", "side", "protosvit")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo. The defaults finish in well under 15 minutes on 2 CPU cores."""

    image_size: int = 128
    train_size: int = 1200
    test_size: int = 240
    eval_images: int = 120
    backbone: str = "lite0"
    ig_steps: int = 16
    side_epochs: tuple[int, int, int] = (20, 10, 20)  # pretrain, finetune, calibrate
    side_channels: int = 128
    protosvit_epochs: int = 80  # on 4x4 feature maps of 1200 images ProtoS-ViT needs long: 54% after 20 epochs, 71% after 60
    protosvit_prototypes: int = 300
    protosvit_dim: int = 256
    classifier_epochs: int = 100

    @classmethod
    def quick(cls) -> "DemoConfig":
        """Tiny sizes for smoke tests (the small CNN backbone, 48-pixel images)."""
        return cls(image_size=48, train_size=96, test_size=24, eval_images=8, backbone="small-cnn", ig_steps=4,
                   side_epochs=(2, 1, 1), side_channels=6, protosvit_epochs=2, protosvit_prototypes=12, protosvit_dim=8,
                   classifier_epochs=2)

    @property
    def data_options(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "train_size": self.train_size, "val_size": 0, "test_size": self.test_size}


def _train(name: str, config: DemoConfig, out: Path, cache_dir: Path, progress: bool) -> dict[str, Any]:
    common = dict(data="parts", data_options=config.data_options, backbone=config.backbone, image_size=config.image_size,
                  cache_dir=str(cache_dir))
    if name == "classifier":
        from .train.classifier import ClassifierTrainConfig, train_classifier

        return train_classifier(ClassifierTrainConfig(**common, mode="probe", epochs=config.classifier_epochs, lr=1e-2), out,
                                progress=progress)
    if name == "side":
        from .train.side import SIDETrainConfig, train_side

        pretrain, finetune, calibrate = config.side_epochs
        side = SIDETrainConfig(**common, pretrain_epochs=pretrain, finetune_epochs=finetune, calibrate_epochs=calibrate,
                               expanded_channels=config.side_channels, prune_k=min(7, 2 * config.side_channels))
        return train_side(side, out, progress=progress)
    from .train.protosvit import ProtoSViTTrainConfig, train_protosvit

    protosvit = ProtoSViTTrainConfig(**common, epochs=config.protosvit_epochs, num_prototypes=config.protosvit_prototypes,
                                     embed_dim=config.protosvit_dim, hoyer_warmup_epochs=max(1, min(5, config.protosvit_epochs // 3)))
    return train_protosvit(protosvit, out, progress=progress)


def run_demo(out: str | os.PathLike, config: DemoConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the demo in ``out``; return ``{"rows": ..., "report": path, "seconds": ...}``."""
    from .evaluate import EvaluateConfig, evaluate, write_combined_report

    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    write_json(out / "demo.json", asdict(config))
    results = []
    for name in MODELS:
        _train(name, config, out / name, out / "features", progress)
        evaluated = out / f"eval-{name}"
        if not (evaluated / "metrics.json").is_file():
            settings = {"integrated-gradients": {"n_steps": config.ig_steps}} if name == "classifier" else {}
            evaluate(EvaluateConfig(model=str(out / name), explainers=list(settings) + (["gradcam"] if settings else []),
                                    explainer_settings=settings, limit=config.eval_images),
                     evaluated, overwrite=True, progress=progress)
        results.append(read_json(evaluated / "metrics.json", "evaluation"))
    report = write_combined_report(out / "report.html", [out / f"eval-{name}" for name in MODELS],
                                   title="sparsex demo: the part world")
    rows = {name: row for result in results for name, row in result["rows"].items()}
    return {"rows": rows, "report": str(report), "seconds": time.perf_counter() - began}
