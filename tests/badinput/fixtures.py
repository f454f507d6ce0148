"""What the cases of one campaign share: a scratch folder, and tiny models and run folders built
once per process."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


class Fixtures:
    """A scratch folder and tiny models shared by the cases of one campaign. Without ``root`` it
    makes a temporary folder, which :meth:`close` removes."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self._own = root is None
        self.root = Path(tempfile.mkdtemp(prefix="sparsex-badinput-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, Any] = {}
        self._counter = 0

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self.root, ignore_errors=True)

    def fresh(self, stem: str = "case") -> Path:
        """A new, not yet existing path in the scratch folder."""
        self._counter += 1
        return self.root / f"{stem}-{self._counter}"

    def once(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()``, called the first time ``key`` is asked for; the same object afterwards."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # models -----------------------------------------------------------------------------------

    def classifier(self) -> torch.nn.Module:
        """A small-cnn :class:`~sparsex.models.classifier.ImageClassifier` on 1x8x8 images, 10 classes (random weights)."""
        return self.once("classifier", lambda: _tiny_classifier(channels=1, size=8, classes=10))

    def prototype_classifier(self) -> torch.nn.Module:
        """A :class:`~sparsex.models.classifier.PrototypeClassifier`: a tiny SIDE head on small-cnn, 3x8x8 images."""
        return self.once("prototype", _tiny_prototype_classifier)

    def classifier_run(self) -> Path:
        """A ``sparsex train classifier``-style run folder of :meth:`classifier` (digits, 8x8)."""
        return self.once("classifier_run", lambda: _write_classifier_run(self.root / "classifier-run", self.classifier()))

    def side_checkpoint(self) -> Path:
        """A ``side`` checkpoint folder of :meth:`prototype_classifier`'s head."""
        return self.once("side_checkpoint", lambda: _write_side_checkpoint(self.root / "side-checkpoint",
                                                                          self.prototype_classifier()))

    def minimal_mask_checkpoint(self) -> Path:
        """An (untrained) minimal-mask explainer of :meth:`classifier`, saved as a checkpoint."""
        from sparsex.explainers.minimal_mask import MinimalMask

        return self.once("minimal_mask_checkpoint", lambda: MinimalMask(self.classifier()).save(self.root / "minimal-mask"))

    def vsc_run(self) -> Path:
        """A run folder with a ``vsc`` checkpoint (random weights, 8x8 digits, 4 latent dimensions)."""
        return self.once("vsc_run", lambda: _write_vsc_run(self.root / "vsc-run"))

    def image_file(self, channels: int = 1, size: int = 8) -> Path:
        """A valid PNG image."""
        def build() -> Path:
            from PIL import Image

            path = self.root / f"image-{channels}-{size}.png"
            pixels = (np.arange(size * size * channels) * 37 % 256).astype(np.uint8).reshape(size, size, channels)
            Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)
            return path

        return self.once(f"image-{channels}-{size}", build)


def _tiny_classifier(channels: int, size: int, classes: int) -> torch.nn.Module:
    from sparsex.backbones import create_backbone
    from sparsex.models.classifier import ImageClassifier, LinearProbe

    backbone = create_backbone("small-cnn", image_size=size, in_chans=channels, width=4, seed=0)
    torch.manual_seed(0)
    head = LinearProbe(backbone.info.channels, classes)
    return ImageClassifier(backbone, head, [f"c{i}" for i in range(classes)]).eval().requires_grad_(False)


def _tiny_prototype_classifier() -> torch.nn.Module:
    from sparsex.backbones import create_backbone
    from sparsex.models import create_model
    from sparsex.models.classifier import PrototypeClassifier

    backbone = create_backbone("small-cnn", image_size=8, in_chans=3, width=4, seed=0)
    torch.manual_seed(0)
    head = create_model("side", in_channels=backbone.info.channels, num_classes=3, expanded_channels=4)
    return PrototypeClassifier(backbone, head, ["a", "b", "c"]).eval().requires_grad_(False)


def _write_classifier_run(run: Path, model: torch.nn.Module) -> Path:
    from sparsex.checkpoint import save_checkpoint

    config = {
        "model": {"name": "linear-probe", "in_channels": model.head.in_channels, "num_classes": model.num_classes},
        "backbone": {"name": "small-cnn", "pretrained": False, "weights": None, "layer": None, "image_size": 8,
                     "in_chans": 1, "width": 4},
        "data": {"name": "digits", "root": None, "options": {}, "classes": list(model.classes)},
        "mode": "end-to-end",
    }
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run / "checkpoint", model, "classifier", config)
    return run


def _write_vsc_run(run: Path) -> Path:
    from sparsex.checkpoint import save_checkpoint
    from sparsex.models import create_model

    settings = {"image_size": 8, "channels": 1, "latent_dim": 4, "hidden_dim": 8}
    torch.manual_seed(0)
    model = create_model("vsc", **settings)
    config = {"model": {"name": "vsc", **settings},
              "data": {"name": "digits", "root": None, "options": {}, "classes": [str(i) for i in range(10)]}}
    save_checkpoint(run / "checkpoint", model, "vsc", config)
    return run


def _write_side_checkpoint(path: Path, model: torch.nn.Module) -> Path:
    from sparsex.checkpoint import save_checkpoint

    head = model.head
    config = {
        "model": {"name": "side", "in_channels": head.config.in_channels, "num_classes": head.config.num_classes,
                  "expanded_channels": head.config.expanded_channels},
        "backbone": {"name": "small-cnn", "pretrained": False, "weights": None, "layer": None, "image_size": 8,
                     "in_chans": 3, "width": 4},
        "data": {"name": "digits", "root": None, "options": {}, "classes": ["a", "b", "c"]},
        "cache_dir": str(path.parent / "side-cache"),
    }
    save_checkpoint(path, head, "side", config)
    return path
