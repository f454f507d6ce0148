"""Classifiers from anywhere behind one spec.

- :class:`Preprocess`: how an image file becomes a model's input (resize, centre crop, channels)
  and the ``mean`` / ``std`` that the model's forward normalises with.
- :class:`WrappedClassifier` (built by :func:`wrap_classifier`): any ``nn.Module`` that maps
  normalised images to logits, as a module on raw ``[0, 1]`` images, the input of every sparsex
  explainer and metric.
- :func:`load_classifier` (``sparsex.load_classifier``): a classifier from a model spec,

  - ``RUN_FOLDER``: a run (or checkpoint) folder of ``sparsex train classifier | side |
    infodisent | protosvit`` (:func:`~sparsex.models.classifier.load_image_classifier`);
  - ``timm:NAME``: ``timm.create_model(NAME, pretrained=False)``, preprocessed as timm's
    pretrained config of NAME says;
  - ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None)``, preprocessed as
    ``get_model_weights(NAME).DEFAULT.transforms()`` says;
  - ``lite0-imagenet``: the bundled ImageNet EfficientNet-Lite0
    (:func:`~sparsex.backbones.lite0.imagenet_lite0`), shorter side 256, centre crop 224.

Nothing is downloaded: timm and torchvision models start from random weights and ``weights=PATH``
loads a local safetensors or state-dict file (:mod:`sparsex.weights`). A timm or torchvision
model with 1000 classes gets the ImageNet class names, any other ``"0"`` .. ``"K-1"``.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from PIL import Image
from torch import nn

from ..backbones.backbone import _create_timm, _is_vit, input_channels
from ..checks import check_images, check_int, check_number, from_settings
from ..data.base import check_channels, check_image_size, load_image, pil_to_tensor, resize_center_crop, resize_shorter_side
from ..errors import CheckpointError, InputError, SparsexError, UnknownNameError
from ..inference import check_logits, check_model, choice, frozen
from ..weights import load_state_dict_checked, read_state_dict

#: the forms of a model spec, as error messages list them
SPEC_FORMS = ("RUN_FOLDER (a run of sparsex train classifier, side, infodisent or protosvit), timm:NAME, "
              "torchvision:NAME, lite0-imagenet")
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes a model's input ``(channels, H, W)`` in ``[0, 1]``: read with
    ``channels`` channels (1 or 3; grey-scale and alpha converted), the shorter side resized to
    ``resize`` pixels with ``interpolation`` ("bilinear" or "bicubic"), then the central
    ``crop x crop`` taken. With a crop and ``resize=None`` the shorter side becomes ``crop``
    (:func:`~sparsex.data.base.resize_center_crop`); with neither the image keeps its size.

    ``mean`` and ``std`` (one value per channel; default 0 and 1) are not applied to the loaded
    image: the model's forward normalises, ``(x - mean) / std`` (:class:`WrappedClassifier`).
    """

    resize: int | None = None
    crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int = 3
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        check_int(self.resize, "preprocess resize (shorter side in pixels)", 1, none_ok=True)
        check_int(self.crop, "preprocess crop (centre crop side in pixels)", 1, none_ok=True)
        channels = check_channels(self.channels, "preprocess channels")
        choice(self.interpolation, "preprocess interpolation", tuple(INTERPOLATIONS))
        object.__setattr__(self, "mean", _per_channel(self.mean, "mean", channels, default=0.0, positive=False))
        object.__setattr__(self, "std", _per_channel(self.std, "std", channels, default=1.0, positive=True))

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of every loaded image, ``(crop, crop)``; ``None`` without a crop (sizes follow the files)."""
        return None if self.crop is None else (self.crop, self.crop)

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """The image file at ``path`` as the model's input ``(channels, H, W)``, float32 in ``[0, 1]``
        (not normalised); a missing or unreadable file raises :class:`~sparsex.errors.DataError`."""
        image = load_image(path, channels=self.channels)
        resample = INTERPOLATIONS[self.interpolation]
        if self.crop is not None:
            image = resize_center_crop(image, self.crop, self.resize, resample)
        elif self.resize is not None:
            image = resize_shorter_side(image, self.resize, resample)
        return pil_to_tensor(image)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict; :meth:`from_dict` rebuilds an equal ``Preprocess``."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "Preprocess":
        """A ``Preprocess`` from :meth:`to_dict`'s dict; unknown keys raise a one-line error listing the valid ones."""
        return from_settings(cls, settings, "preprocess", error=InputError)


def _per_channel(values: Any, name: str, channels: int, default: float, positive: bool) -> tuple[float, ...]:
    """``values`` (a list or tuple of ``channels`` finite numbers, each > 0 if ``positive``;
    ``None``: ``default`` for each) as a tuple of floats."""
    if values is None:
        return (default,) * channels
    if not isinstance(values, (list, tuple)) or len(values) != channels:
        raise InputError(f"preprocess {name} must be {channels} numbers (one per channel), got {values!r}")
    return tuple(check_number(v, f"preprocess {name} (per channel)", 0 if positive else None, low_open=True)
                 for v in values)


class NamedLayers:
    """``layer_names()`` and ``layer(name)`` for an image classifier (an ``nn.Module``): the
    modules explainers may hook, by their ``named_modules()`` names."""

    def layer_names(self) -> list[str]:
        """Names of the hookable modules (``named_modules`` with a non-empty name)."""
        return [name for name, _ in self.named_modules() if name]

    def layer(self, name: str) -> nn.Module:
        """The sub-module called ``name``; an unknown name suggests the closest names and lists the
        last convolutions."""
        modules = dict(self.named_modules())
        if not isinstance(name, str) or not name or name not in modules:
            close = difflib.get_close_matches(str(name), self.layer_names(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            raise InputError(f"{type(self).__name__} has no layer {name!r}{hint} (last convolutions: "
                             f"{', '.join(convs[-6:]) or '(none)'}; all names: layer_names())")
        return modules[name]


class WrappedClassifier(NamedLayers, nn.Module):
    """A classifier ``module`` on normalised images as a module on raw images: ``forward(x)``
    takes ``x (B, C, H, W)`` in ``[0, 1]`` (``C = preprocess.channels``) and returns
    ``module((x - mean) / std)``, logits ``(B, K)``, with ``mean`` and ``std`` those of
    ``preprocess``.

    Attributes: ``module``; ``preprocess`` (:class:`Preprocess`: how an image file becomes ``x``);
    ``classes`` (the K class names); ``num_classes`` (K); ``input_size`` (``(H, W)`` of ``x``).
    Build one with :func:`wrap_classifier`, which checks that the module gives K logits.
    """

    def __init__(self, module: nn.Module, preprocess: Preprocess, classes: list[str],
                 input_size: tuple[int, int]) -> None:
        super().__init__()
        self.module = module
        self.preprocess = preprocess
        self.classes = list(classes)
        self.input_size = tuple(input_size)
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, -1, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, channels=self.preprocess.channels)
        return self.module((images - self.mean) / self.std)


def wrap_classifier(module: nn.Module, preprocess: Preprocess | None = None, class_names: list[str] | None = None,
                    input_size: tuple[int, int] | None = None) -> WrappedClassifier:
    """Any ``module`` mapping normalised images ``(B, C, H, W)`` to logits ``(B, K)`` as a
    :class:`WrappedClassifier` on raw ``[0, 1]`` images.

    Args:
        module: the classifier (left in its mode; explainers freeze it while they run it).
        preprocess: how image files become its input, and its per-channel ``mean`` / ``std``
            (default: no resize or crop, mean 0, std 1, the channels of its first ``Conv2d``, else 3).
        class_names: its K class names (default ``"0"`` .. ``"K-1"``).
        input_size: ``(H, W)`` of its input; needed when ``preprocess`` has no crop, else must
            agree with it.

    The module runs once on a zero image of ``input_size`` (in eval mode, restored afterwards) to
    check that it returns logits ``(1, K)`` and count K.
    """
    check_model(module)
    if preprocess is None:
        preprocess = Preprocess(channels=_first_conv_channels(module))
    elif not isinstance(preprocess, Preprocess):
        raise InputError(f"preprocess must be a sparsex Preprocess, got {type(preprocess).__name__}")
    size = check_image_size(input_size)
    if size is None and preprocess.input_size is None:
        raise InputError("wrap_classifier needs the model's input size: pass input_size=(H, W) or a preprocess "
                         "with a crop")
    if size is not None and preprocess.input_size not in (None, size):
        raise InputError(f"input_size {size} disagrees with the preprocess crop {preprocess.input_size}")
    size = size or preprocess.input_size
    count = _count_classes(module, preprocess.channels, size)
    if class_names is None:
        classes = [str(i) for i in range(count)]
    elif not isinstance(class_names, (list, tuple)) or len(class_names) != count:
        got = len(class_names) if isinstance(class_names, (list, tuple)) else repr(class_names)
        raise InputError(f"class_names must be a list of {count} names (the model gives {count} logits), got {got}")
    else:
        classes = [str(name) for name in class_names]
    return WrappedClassifier(module, preprocess, classes, size)


def _first_conv_channels(module: nn.Module) -> int:
    """The input channels of ``module``'s first ``Conv2d``, or 3 when it has none."""
    try:
        return input_channels(module)
    except SparsexError:
        return 3


def _count_classes(module: nn.Module, channels: int, input_size: tuple[int, int]) -> int:
    """K, from one run of ``module`` on a zero image ``(1, channels, H, W)`` (frozen; restored afterwards)."""
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    x = torch.zeros(1, channels, *input_size, device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None else torch.float32)
    with frozen(module), torch.no_grad():
        try:
            logits = module(x)
        except Exception as e:  # the user's module: name its failure in one line
            message = (str(e).strip().splitlines() or [""])[0][:200]
            raise InputError(f"the classifier fails on an image {tuple(x.shape)}: {type(e).__name__}: {message}") from e
    return check_logits(logits, 1).shape[1]


def is_spec(value: str | os.PathLike) -> bool:
    """Whether ``value`` names a model by spec (``timm:resnet18``, ``lite0-imagenet``) rather than a run folder."""
    text = os.fspath(value)
    return text.startswith(("timm:", "torchvision:")) or text == "lite0-imagenet"


def load_classifier(spec: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                    num_classes: int | None = None, image_size: int | None = None,
                    mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> nn.Module:
    """The classifier that ``spec`` names (the forms are in the module docstring), on raw images:
    ``model(x (B, C, H, W) in [0, 1]) -> logits (B, K)``, in eval mode with no parameter requiring
    gradients, with ``.classes`` (K names), ``.num_classes``, ``.input_size`` and ``.preprocess``
    (:class:`Preprocess`: ``model.preprocess.load(path)`` is an input image).

    Args (timm and torchvision; ``lite0-imagenet`` takes ``image_size``, ``mean`` and ``std``; a
    run folder none, its checkpoint holds them):
        weights: a local ``.safetensors`` or state-dict file for the architecture (default:
            random weights); its keys must fit exactly.
        num_classes: K (default: the head of ``weights``, else the architecture's default);
            must agree with the head of ``weights``.
        image_size: the centre crop side (default: the model's own); the shorter side is resized
            in the model's own proportion (timm's ``crop_pct``).
        mean, std: per-channel normalisation (default: the model's own).
    """
    check_int(num_classes, "num_classes", 1, none_ok=True)
    check_int(image_size, "image_size", 1, none_ok=True)
    if not isinstance(spec, (str, os.PathLike)):
        raise InputError(f"model spec must be a string or a path, got {type(spec).__name__}; forms: {SPEC_FORMS}")
    text = os.fspath(spec)
    if isinstance(spec, str) and spec.startswith("timm:"):
        model = _load_timm(spec[len("timm:"):], weights, num_classes, image_size, mean, std)
    elif isinstance(spec, str) and spec.startswith("torchvision:"):
        model = _load_torchvision(spec[len("torchvision:"):], weights, num_classes, image_size, mean, std)
    elif spec == "lite0-imagenet":
        model = _load_lite0_imagenet(weights, num_classes, image_size, mean, std)
    elif Path(text).is_dir():
        from .classifier import load_image_classifier  # classifier.py imports this module

        settings = {"weights": weights, "num_classes": num_classes, "image_size": image_size, "mean": mean, "std": std}
        given = [name for name, value in settings.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} cannot be set for a run folder ({text}): its checkpoint holds the "
                             f"weights and classes, its backbone the input size and normalisation")
        model, _ = load_image_classifier(text)
    else:
        raise UnknownNameError(f"model spec {text!r}: no such folder, and not a model name; forms: {SPEC_FORMS}")
    return model.eval().requires_grad_(False)


def _load_timm(name: str, weights: str | os.PathLike | None, num_classes: int | None, image_size: int | None,
               mean: Any, std: Any) -> WrappedClassifier:
    if not timm.is_model(name):
        raise _unknown_name("timm", name, timm.list_models(), "timm.list_models()")

    def create(classes: int | None) -> nn.Module:
        settings = {} if classes is None else {"num_classes": classes}
        model = _create_timm(name, **settings)
        if image_size is not None and _is_vit(model) and tuple(model.patch_embed.img_size) != (image_size, image_size):
            model = _create_timm(name, img_size=image_size, **settings)  # position embeddings for that size
        return model

    model = _create_with_weights(create, weights, num_classes)
    config = timm.data.resolve_data_config({}, model=model)
    preprocess = _evaluation_preprocess(config["input_size"][1], config["crop_pct"], config["mean"], config["std"],
                                        config["interpolation"], image_size, mean, std)
    return _wrap_with_names(model, preprocess, imagenet_class_names)


def _load_torchvision(name: str, weights: str | os.PathLike | None, num_classes: int | None,
                      image_size: int | None, mean: Any, std: Any) -> WrappedClassifier:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)  # classification models only
    if name not in names:
        raise _unknown_name("torchvision classification", name, names, "torchvision.models.list_models()")

    def create(classes: int | None) -> nn.Module:
        return torchvision.models.get_model(name, weights=None, **({} if classes is None else {"num_classes": classes}))

    model = _create_with_weights(create, weights, num_classes)
    default = torchvision.models.get_model_weights(name).DEFAULT  # an enum entry: nothing is downloaded
    transforms = default.transforms()
    (crop,), (resize,) = transforms.crop_size, transforms.resize_size
    preprocess = _evaluation_preprocess(crop, Fraction(crop, resize), transforms.mean, transforms.std,
                                        transforms.interpolation.value, image_size, mean, std)
    return _wrap_with_names(model, preprocess, lambda: list(default.meta["categories"]))


def _load_lite0_imagenet(weights: str | os.PathLike | None, num_classes: int | None, image_size: int | None,
                         mean: Any, std: Any) -> WrappedClassifier:
    from ..backbones.lite0 import EVAL_CROP, EVAL_RESIZE, MEAN, STD, imagenet_lite0

    if weights is not None or num_classes not in (None, IMAGENET_CLASSES):
        raise InputError("lite0-imagenet is the bundled 1000-class ImageNet model: it takes no weights or num_classes "
                         "(for other weights use timm:tf_efficientnet_lite0 with weights=PATH)")
    preprocess = _evaluation_preprocess(EVAL_CROP, Fraction(EVAL_CROP, EVAL_RESIZE), MEAN, STD, "bilinear",
                                        image_size, mean, std)
    return _wrap_with_names(imagenet_lite0(), preprocess, imagenet_class_names)


def _unknown_name(library: str, name: str, names: list[str], listing: str) -> UnknownNameError:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {library} model {name!r}{hint} (all names: {listing})")


def _create_with_weights(create: Callable[[int | None], nn.Module], weights: str | os.PathLike | None,
                         num_classes: int | None) -> nn.Module:
    """``create(K)`` (``None``: the architecture's default K), with the weights of the file
    ``weights`` loaded strictly. The file's head (the model's last ``nn.Linear``) sets K when
    ``num_classes`` is ``None`` and must agree with it otherwise."""
    model = create(num_classes)
    if weights is None:
        return model
    state = read_state_dict(weights)
    head = next((name for name, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)
    head_weight = state.get(f"{head}.weight")
    if head_weight is not None and head_weight.dim() == 2:
        file_classes = int(head_weight.shape[0])
        if num_classes is not None and num_classes != file_classes:
            raise CheckpointError(f"num_classes={num_classes} disagrees with weights file {weights}: its head "
                                  f"{head}.weight {tuple(head_weight.shape)} has {file_classes} classes")
        if file_classes != model.get_submodule(head).out_features:
            model = create(file_classes)
    load_state_dict_checked(model, state, f"weights file {weights}")
    return model


def _evaluation_preprocess(crop: int, crop_fraction: float | Fraction, mean: Any, std: Any, interpolation: str,
                           image_size: int | None, mean_override: Any, std_override: Any) -> Preprocess:
    """Resize the shorter side to ``floor(crop / crop_fraction)``, then the central ``crop x crop``
    (timm's ``crop_pct`` rule; an exact ``Fraction`` where the source gives two sizes), with
    ``image_size``, ``mean_override``, ``std_override`` replacing the crop, mean and std when given."""
    side = crop if image_size is None else image_size
    return Preprocess(resize=math.floor(side / crop_fraction), crop=side,
                      mean=mean if mean_override is None else mean_override,
                      std=std if std_override is None else std_override, channels=3, interpolation=interpolation)


def _wrap_with_names(model: nn.Module, preprocess: Preprocess,
                     imagenet_names: Callable[[], list[str]]) -> WrappedClassifier:
    """``model`` wrapped on ``preprocess`` (with crop), named ``imagenet_names()`` when it has 1000 classes."""
    count = _count_classes(model, preprocess.channels, preprocess.input_size)
    classes = imagenet_names() if count == IMAGENET_CLASSES else [str(i) for i in range(count)]
    return WrappedClassifier(model, preprocess, classes, preprocess.input_size)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order, as timm describes them ("tench, Tinca
    tinca", ..., "palace", ..., "daisy"; from timm's package files, offline)."""
    info = timm.data.ImageNetInfo()
    return [info.index_to_description(i) for i in range(IMAGENET_CLASSES)]
