"""Image files to tensors and back (data/base.py)."""

import pytest
import torch

from sparsex.data.base import read_image_tensor, save_image_png
from sparsex.errors import DataError


def test_png_round_trip_is_exact_for_8_bit_values(tmp_path):
    image = torch.randint(0, 256, (3, 5, 7)).float() / 255
    save_image_png(image, tmp_path / "rgb.png")
    back = read_image_tensor(tmp_path / "rgb.png")
    assert back.shape == (1, 3, 5, 7) and torch.equal(back[0], image)
    save_image_png(image[:1] * 2 - 0.5, tmp_path / "grey.png")  # out-of-range values are clamped
    grey = read_image_tensor(tmp_path / "grey.png", channels=1)
    assert grey.shape == (1, 1, 5, 7) and torch.equal(grey[0], ((image[:1] * 2 - 0.5).clamp(0, 1) * 255).round() / 255)


def test_read_resizes_and_names_bad_files(tmp_path):
    save_image_png(torch.rand(3, 10, 12), tmp_path / "x.png")
    assert read_image_tensor(tmp_path / "x.png", size=(4, 6)).shape == (1, 3, 4, 6)
    (tmp_path / "bad.png").write_text("no image")
    with pytest.raises(DataError, match="cannot read image"):
        read_image_tensor(tmp_path / "bad.png")
