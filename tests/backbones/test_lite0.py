"""The bundled EfficientNet-Lite0 weights and preprocessing are right on real photos."""

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from sparsex.backbones import create_backbone
from sparsex.data.base import pil_to_tensor, resize_center_crop


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("lite0", pretrained=True)


def test_lite0_info(lite0):
    info = lite0.info
    assert (info.channels, info.stride, info.feature_size) == (1280, 32, (7, 7))
    assert info.mean == info.std == (0.5, 0.5, 0.5) and info.weights.startswith("bundled:")


@pytest.mark.parametrize("photo, imagenet_class", [("china.jpg", 698), ("flower.jpg", 985)])
def test_lite0_classifies_sample_photos(lite0, photo, imagenet_class):
    """Standard ImageNet evaluation: shorter side 256, centre crop 224, mean = std = 0.5."""
    image = resize_center_crop(Image.fromarray(load_sample_image(photo)), 224, resize_to=256)
    x = lite0.preprocess(pil_to_tensor(image)[None])
    assert x.min() >= -1 and x.max() <= 1
    with torch.no_grad():
        logits = lite0.model(x)
    assert logits.argmax(1).item() == imagenet_class
