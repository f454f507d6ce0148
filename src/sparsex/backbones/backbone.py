"""Frozen feature extractors behind one factory.

``create_backbone(name, pretrained=..., weights=None, layer=None)`` returns a :class:`Backbone`:
an ``nn.Module`` mapping preprocessed images ``(B, in_chans, H, W)`` to spatial features
``(B, C, h, w)``, with ``preprocess`` for raw ``[0, 1]`` images and a :class:`BackboneInfo`
that states channels, stride, feature-map size, input size and normalisation.

- Any timm model name works (``resnet18``, ``vit_small_patch14_dinov2``, ...). Nothing is
  downloaded: random weights by default, or ``weights=PATH`` for a local file.
- Registered names (``lite0``, ``small-cnn``) add bundled weights or models of our own.
- ViTs: the token sequence is returned as a grid; the class and register tokens (timm's
  ``num_prefix_tokens``) are dropped explicitly and reported in ``info.prefix_tokens``.
- ``layer=None`` takes the model's final spatial features (``forward_features``: after the last
  norm / head conv); ``layer=i`` takes timm's ``feature_info[i]`` (a CNN stage or a ViT block).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images, check_int
from ..errors import InputError, SparsexError, UnknownNameError
from ..registry import Registry
from ..weights import load_state_dict_checked, module_sha256, read_state_dict

BACKBONES: Registry[Callable[..., "Backbone"]] = Registry("backbone")


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone produces and expects. Sizes are ``(H, W)``."""

    name: str
    arch: str  # the timm model name (or our own module's name)
    kind: str  # "cnn" or "vit"
    layer: int | None
    channels: int
    stride: int
    feature_size: tuple[int, int]
    input_size: tuple[int, int]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    prefix_tokens: int  # class/register tokens dropped from a ViT's sequence (0 for CNNs)
    weights: str  # "random", "bundled:<file>" or the local path that was loaded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backbone(nn.Module):
    """A frozen feature extractor: ``forward(x) -> (B, C, h, w)`` on preprocessed images."""

    def __init__(self, model: nn.Module, name: str, arch: str, layer: int | None,
                 input_size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...],
                 weights: str) -> None:
        super().__init__()
        if layer is not None:
            levels = len(getattr(model, "feature_info", None) or [])
            check_int(layer, f"layer of backbone {name} (it has {levels} feature levels; unset: the final features)",
                      0, levels - 1, error=SparsexError)
        self.model = model
        self.name = name
        self.layer = layer
        self.frozen = False
        self.kind = "vit" if _is_vit(model) else "cnn"
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", 0)) if self.kind == "vit" else 0
        self.in_chans = in_chans = input_channels(model)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self._input_size = tuple(input_size)
        model.eval()
        with torch.no_grad():
            probe = self.forward(torch.zeros(1, in_chans, *input_size))
        self.info = BackboneInfo(
            name=name, arch=arch, kind=self.kind, layer=layer, channels=probe.shape[1],
            stride=input_size[0] // probe.shape[2], feature_size=(probe.shape[2], probe.shape[3]),
            input_size=tuple(input_size), in_chans=in_chans, mean=tuple(mean), std=tuple(std),
            prefix_tokens=self.prefix_tokens, weights=weights,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images ``(B, in_chans, H, W)`` -> features ``(B, C, h, w)``."""
        if self.kind == "vit" and tuple(x.shape[-2:]) != self._input_size and not getattr(self.model, "dynamic_img_size", False):
            h, w = self._input_size
            raise InputError(
                f"backbone {self.name} needs {h}x{w} inputs "
                f"(its position embeddings), got {x.shape[-2]}x{x.shape[-1]}; use preprocess() or image_size={h}"
            )
        if self.layer is None:
            feats = self.model.forward_features(x)
        else:
            feats = self.model.forward_intermediates(x, indices=[self.layer], intermediates_only=True)[0]
        if feats.dim() == 3:  # ViT tokens (B, N, C): drop class/register tokens, lay patches on the grid
            grid_h, grid_w = self.model.patch_embed.dynamic_feat_size(x.shape[-2:]) if getattr(
                self.model, "dynamic_img_size", False) else self.model.patch_embed.grid_size
            feats = feats[:, self.prefix_tokens:, :]
            feats = feats.transpose(1, 2).reshape(feats.shape[0], feats.shape[2], grid_h, grid_w)
        return feats

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Raw images ``(B, 1 or 3, H, W)`` in ``[0, 1]`` -> normalised ``(B, in_chans, *input_size)``.

        Grey-scale is repeated to 3 channels (or colour averaged to 1) as the model needs; images of
        another size are resized (bilinear, antialiased); then ``(x - mean) / std``.
        """
        check_images(images)
        in_chans = self.in_chans
        if images.shape[1] == 1 and in_chans == 3:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] == 3 and in_chans == 1:
            images = images.mean(dim=1, keepdim=True)
        elif images.shape[1] != in_chans:
            raise InputError(f"images have {images.shape[1]} channels; backbone takes {in_chans} (or 1/3, converted)")
        if tuple(images.shape[-2:]) != self._input_size:
            images = F.interpolate(images, size=self._input_size, mode="bilinear", align_corners=False, antialias=True)
        return (images - self.mean) / self.std

    def train(self, mode: bool = True) -> "Backbone":
        """A frozen backbone stays in eval mode (its BatchNorm statistics never move)."""
        return super().train(mode and not self.frozen)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Raw ``[0, 1]`` images -> features ``(B, C, h, w)`` (preprocess + forward)."""
        return self.forward(self.preprocess(images))

    def weights_sha256(self) -> str:
        """SHA-256 over every parameter and buffer: identifies the weights whatever their source."""
        return module_sha256(self.model)


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")


def input_channels(model: nn.Module) -> int:
    """The channels of the images ``model`` takes: its backbone's ``info.in_chans`` when it has a
    :class:`Backbone` (an image classifier), else the input channels of its first ``Conv2d``."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, Backbone):
        return backbone.info.in_chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise SparsexError(f"cannot tell the input channels of {type(model).__name__}: it has no Backbone and no Conv2d; "
                       f"pass in_chans")


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    classifier = getattr(model, "default_cfg", {}).get("classifier", ())
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _create_timm(arch: str, **kwargs: Any) -> nn.Module:
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as e:
        raise SparsexError(f"timm model {arch!r} does not accept {sorted(kwargs)}: {e}") from None


def timm_backbone(arch: str, name: str | None = None, weights: str | os.PathLike | None = None,
                  layer: int | None = None, image_size: int | None = None, **timm_kwargs: Any) -> Backbone:
    """Wrap any timm architecture (random weights, or a local ``weights`` file)."""
    model = _create_timm(arch, **timm_kwargs)
    if image_size is not None and _is_vit(model) and tuple(model.patch_embed.img_size) != (image_size, image_size):
        model = _create_timm(arch, img_size=image_size, **timm_kwargs)  # position embeddings for that size
    if weights is not None:
        load_state_dict_checked(model, read_state_dict(weights), f"weights file {weights}",
                                optional_prefixes=_classifier_prefixes(model))
    cfg = model.pretrained_cfg
    if _is_vit(model):
        size = tuple(model.patch_embed.img_size)
    else:
        size = (image_size, image_size) if image_size else tuple(cfg.get("input_size", (3, 224, 224))[1:])
    return Backbone(model, name or arch, arch, layer, size, cfg.get("mean", (0.485, 0.456, 0.406)),
                    cfg.get("std", (0.229, 0.224, 0.225)), str(weights) if weights else "random")


def create_backbone(name: str, pretrained: bool = False, weights: str | os.PathLike | None = None,
                    layer: int | None = None, image_size: int | None = None, freeze: bool = True,
                    seed: int = 0, **kwargs: Any) -> Backbone:
    """Create a feature extractor by name.

    Args:
        name: a registered name (``list_backbones()``) or any timm architecture name.
        pretrained: use the weights bundled with sparsex's dependencies (only ``lite0`` has them;
            nothing is downloaded). Other models need ``weights=PATH``.
        weights: a local ``.safetensors`` or state-dict file for the architecture.
        layer: ``None`` for the final spatial features, or an index into timm's ``feature_info``.
        image_size: input side length (default: the model's own).
        freeze: put the model in eval mode with ``requires_grad=False``.
        seed: seed of the random initialisation (of everything the weights do not cover), so the
            same call always gives the same model; the global RNG is left untouched.
    """
    check_int(image_size, "backbone image_size", 1, none_ok=True, error=SparsexError)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = _create(name, pretrained, weights, layer, image_size, **kwargs)
    if freeze:
        backbone.frozen = True
        backbone.eval()
        backbone.requires_grad_(False)
    return backbone


def _create(name: str, pretrained: bool, weights: str | os.PathLike | None, layer: int | None,
            image_size: int | None, **kwargs: Any) -> Backbone:
    if name in BACKBONES:
        backbone = BACKBONES.create(name, pretrained=pretrained, weights=weights, layer=layer,
                                    image_size=image_size, **kwargs)
    elif timm.is_model(name):
        if pretrained and weights is None:
            raise SparsexError(
                f"no bundled weights for {name!r} (sparsex never downloads); pass weights=PATH "
                f"(--weights) with a local .safetensors or state-dict file"
            )
        backbone = timm_backbone(name, weights=weights, layer=layer, image_size=image_size, **kwargs)
    else:
        raise UnknownNameError(
            f"unknown backbone {name!r}; registered: {', '.join(BACKBONES.names())}, "
            f"or any timm architecture (timm.list_models())"
        )
    return backbone


def list_backbones() -> list[str]:
    """Registered backbone names (any timm architecture name works too)."""
    return BACKBONES.names()
