"""``small-cnn``: a three-block CNN for 28x28 grey-scale images (MNIST, Fashion-MNIST).

Trained end to end by the classifier trainer (random weights here, or ``weights=PATH``).
Feature map: 64 channels at stride 4, i.e. ``(B, 64, 7, 7)`` for 28x28 inputs.
"""

from __future__ import annotations

import os

from torch import nn

from ..checks import check_int
from ..errors import SparsexError
from ..weights import load_state_dict_checked, read_state_dict
from .backbone import BACKBONES, Backbone


class SmallCNN(nn.Module):
    """conv(1->32)-pool-conv(32->64)-pool-conv(64->64), each conv 3x3 + BatchNorm + ReLU."""

    def __init__(self, in_chans: int = 1, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(in_chans, width), nn.MaxPool2d(2), block(width, 2 * width), nn.MaxPool2d(2), block(2 * width, 2 * width)
        )

    def forward_features(self, x):
        return self.features(x)

    forward = forward_features


@BACKBONES.register("small-cnn", description="3-block CNN for 28x28 grey images (random init, trained end to end); 64 ch, stride 4")
def create_small_cnn(pretrained: bool = False, weights: str | os.PathLike | None = None, layer: int | None = None,
                     image_size: int | None = None, in_chans: int = 1, width: int = 32) -> Backbone:
    """The small CNN; it has no bundled weights (``pretrained`` is ignored), ``weights=PATH`` loads a file."""
    if layer is not None:
        raise SparsexError("small-cnn has a single feature layer; leave layer unset")
    for setting, value in (("in_chans", in_chans), ("width", width)):
        check_int(value, f"small-cnn setting {setting}", 1, error=SparsexError)
    model = SmallCNN(in_chans, width)
    if weights is not None:
        load_state_dict_checked(model, read_state_dict(weights), f"weights file {weights}")
    size = image_size or 28
    return Backbone(model, "small-cnn", "SmallCNN", None, (size, size), (0.5,) * in_chans, (0.5,) * in_chans,
                    str(weights) if weights else "random")
