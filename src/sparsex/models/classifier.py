"""Plain classifiers: the dense baselines that sparse heads are compared with, and the models
that post-hoc explainers explain.

- :class:`LinearProbe` (``linear-probe``): a head on a backbone's feature map.
- :class:`ImageClassifier`: backbone + head as one module on raw ``[0, 1]`` images, what
  ``sparsex train classifier`` checkpoints (family ``classifier``) and :func:`load_classifier`
  rebuilds. The checkpoint holds the backbone's weights too, so it does not depend on where they
  came from. Like every classifier of :func:`sparsex.load_classifier` it has ``classes``,
  ``num_classes``, ``input_size``, ``preprocess`` and ``layer_names()`` / ``layer(name)``.
- :class:`PrototypeClassifier`: a prototype head (SIDE, InfoDisent, ProtoS-ViT) on its frozen
  backbone as one module on raw images returning logits, so that every explainer and metric can
  treat it as a classifier. :func:`load_image_classifier` rebuilds either kind from a run folder.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..backbones import Backbone, create_backbone
from ..checkpoint import Checkpoint, checkpoint_dir, load_checkpoint
from ..checks import check_images, check_int
from ..errors import CheckpointError, SparsexError
from .base import MODELS, check_head_features, create_model
from .specs import NamedLayers, Preprocess

FAMILY = "classifier"
#: checkpoint families of prototype classifiers
PROTOTYPE_FAMILIES = ("side", "infodisent", "protosvit")


class LinearProbe(nn.Module):
    """A linear probe: global average pooling, then one linear layer,
    ``logits = W mean_{i,j} F[:, i, j] + b`` for features ``F (B, C, h, w)``. ``forward`` returns
    the logits ``(B, K)``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            check_int(value, f"linear probe setting {name}", 1, error=SparsexError)
        self.in_channels = in_channels
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_head_features(features, self.in_channels, "linear probe")
        return self.linear(features.mean(dim=(2, 3)))


@MODELS.register("linear-probe", description="dense baseline: global average pooling + one linear layer")
def create_linear_probe(**cfg: Any) -> LinearProbe:
    return LinearProbe(**cfg)


class ImageClassifier(NamedLayers, nn.Module):
    """``logits = head(backbone(preprocess(images)))`` for raw images ``(B, C, H, W)`` in ``[0, 1]``
    (any size and 1 or 3 channels: the backbone's ``preprocess`` converts them).

    ``classes``: the K class names (default ``"0"`` .. ``"K-1"``). ``layer_names()`` lists the
    modules explainers may hook (the backbone's convolutions and blocks, then ``head``);
    ``layer(name)`` returns one by name.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, classes: list[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.classes = list(classes) if classes else [str(i) for i in range(self.num_classes)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        return self.head(self.backbone(self.backbone.preprocess(images)))

    @property
    def num_classes(self) -> int:
        return self.head.linear.out_features

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.backbone.info.input_size)

    @property
    def preprocess(self) -> Preprocess:
        """How an image file becomes this model's input: the shorter side resized to the backbone's
        input size, the central square cropped; mean 0 / std 1 (the backbone normalises)."""
        side = min(self.input_size)
        return Preprocess(resize=side, crop=side, channels=self.backbone.info.in_chans)


def load_classifier(path: str | os.PathLike) -> tuple[ImageClassifier, Checkpoint]:
    """Rebuild the :class:`ImageClassifier` of a ``sparsex train classifier`` run or checkpoint folder
    (``<run>/checkpoint`` is found from ``<run>``). Returns it in eval mode, frozen, with its
    checkpoint (``checkpoint.config`` names the data and the backbone)."""
    folder = checkpoint_dir(path)
    checkpoint = load_checkpoint(folder, family=FAMILY)
    config = checkpoint.config
    for key in ("backbone", "model"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"classifier checkpoint {folder}: config entry {key!r} must be a JSON object, "
                                  f"got {config.get(key)!r}")
    try:
        backbone = create_backbone(**{**config["backbone"], "pretrained": False, "weights": None})
        settings = dict(config["model"])
        head = create_model(settings.pop("name"), **settings)
    except KeyError as e:
        raise CheckpointError(f"classifier checkpoint {folder} lacks config entry {e}") from None
    except TypeError as e:  # settings the backbone or the head does not take
        raise CheckpointError(f"classifier checkpoint {folder}: config does not fit the model ({e})") from None
    model = ImageClassifier(backbone, head, (config.get("data") or {}).get("classes"))
    checkpoint.load_into(model)
    model.eval().requires_grad_(False)
    return model, checkpoint


class PrototypeClassifier(ImageClassifier):
    """An :class:`ImageClassifier` whose ``head`` is a prototype head: it returns a
    :class:`~sparsex.models.base.PrototypeOutput` (the forward pass keeps its ``logits``) and has
    ``class_weights()`` (what the ``prototypes`` explainer and the prototype metrics read)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.extract(images)).logits

    @property
    def num_classes(self) -> int:
        return int(self.head.class_weights().shape[0])


def load_image_classifier(path: str | os.PathLike) -> tuple[nn.Module, Checkpoint]:
    """Any trained classifier of sparsex on raw images, from its run or checkpoint folder: a
    ``classifier`` checkpoint gives an :class:`ImageClassifier`; a prototype model's (SIDE,
    InfoDisent, ProtoS-ViT) a :class:`PrototypeClassifier` on the backbone its config names (built
    from local weights). Returned in eval mode, frozen, with the checkpoint (whose config names
    the training data)."""
    from .base import load_model

    folder = checkpoint_dir(path)
    family = load_checkpoint(folder).family
    if family == FAMILY:
        return load_classifier(folder)
    if family not in PROTOTYPE_FAMILIES:
        raise CheckpointError(f"checkpoint {folder} is a {family!r} model, not an image classifier; expected a run of "
                              f"sparsex train classifier, side, infodisent or protosvit")
    head, checkpoint = load_model(folder)
    if not hasattr(head, "class_weights") or not isinstance(checkpoint.config.get("backbone"), dict):
        raise CheckpointError(f"checkpoint {folder} (family {family!r}) lacks its prototype head or backbone config")
    try:
        backbone = create_backbone(**checkpoint.config["backbone"])
    except TypeError as e:
        raise CheckpointError(f"checkpoint {folder}: config.backbone does not fit the backbone ({e})") from None
    expected = getattr(getattr(head, "config", None), "in_channels", backbone.info.channels)
    if backbone.info.channels != expected:
        raise CheckpointError(f"checkpoint {folder}: its backbone makes {backbone.info.channels}-channel features, "
                              f"its head takes {expected}")
    model = PrototypeClassifier(backbone, head, (checkpoint.config.get("data") or {}).get("classes"))
    model.eval().requires_grad_(False)
    return model, checkpoint
