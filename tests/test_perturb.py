import math

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from sparsex.errors import InputError
from sparsex.perturb import blur, composite, default_sigma, kernel_size, make_baseline


def one_line(error: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(error.value) and str(error.value) != ""


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_default_sigma_and_kernel_size_scale_with_the_image():
    assert default_sigma(28, 28) == 1.75 and default_sigma(224, 224) == 14.0 and default_sigma(32, 64) == 4.0
    assert kernel_size(1.75, 28) == 2 * math.ceil(5.25) + 1 == 13
    assert kernel_size(14.0, 224) == 85
    assert kernel_size(10.0, 4) == 7  # capped: reflect padding (3) must fit inside 4 pixels


def test_blur_is_torchvisions_gaussian_blur_with_the_documented_kernel():
    x = images(2, 3, 28, 20)
    sigma = default_sigma(28, 20)  # 1.75 -> kernel 13 both ways
    expected = gaussian_blur(x, [13, 13], [sigma, sigma])
    torch.testing.assert_close(blur(x), expected)
    torch.testing.assert_close(blur(x, sigma=0.8), gaussian_blur(x, [kernel_size(0.8, 20)] * 2, [0.8, 0.8]))
    # separable, with kernels of different sizes along the two sides (capped on the short one)
    y = images(1, 2, 5, 40)
    sigma = default_sigma(5, 40)
    torch.testing.assert_close(blur(y), gaussian_blur(y, [kernel_size(sigma, 40), kernel_size(sigma, 5)], [sigma, sigma]))


def test_blur_keeps_shape_dtype_and_constants_and_smooths():
    x = images(3, 2, 16, 16).double()
    y = blur(x)
    assert y.shape == x.shape and y.dtype == torch.float64 and y.device == x.device
    assert y.var() < 0.5 * x.var()  # smoothing removes most of the variance of white noise
    const = torch.full((1, 3, 9, 9), 0.3)
    torch.testing.assert_close(blur(const), const)  # reflect padding: no dark borders
    # batch items are blurred independently
    torch.testing.assert_close(blur(x)[1:2], blur(x[1:2]))


def test_blur_handles_tiny_and_non_square_images_and_gradients():
    assert blur(images(2, 1, 2, 2)).shape == (2, 1, 2, 2)
    torch.testing.assert_close(blur(torch.ones(1, 1, 1, 1)), torch.ones(1, 1, 1, 1))
    assert blur(images(1, 3, 5, 40)).shape == (1, 3, 5, 40)
    x = images(1, 1, 8, 8).requires_grad_()
    blur(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "big", True])
def test_blur_refuses_bad_sigma(bad):
    with pytest.raises(InputError, match="sigma") as err:
        blur(images(1, 1, 8, 8), sigma=bad)
    assert one_line(err)


@pytest.mark.parametrize("x", [torch.rand(3, 8, 8), torch.zeros(1, 1, 4, 4, dtype=torch.long), [[1.0]]])
def test_blur_refuses_bad_images(x):
    with pytest.raises(InputError) as err:
        blur(x)
    assert one_line(err)


def test_make_baseline():
    x = images(2, 3, 8, 8)
    torch.testing.assert_close(make_baseline(x), blur(x))
    torch.testing.assert_close(make_baseline(x, None, sigma=1.0), blur(x, 1.0))
    assert (make_baseline(x, "zeros") == 0).all()
    assert (make_baseline(x, 0.5) == 0.5).all() and make_baseline(x, 0.5).shape == x.shape
    mean = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1) broadcasts
    torch.testing.assert_close(make_baseline(x, mean), mean.expand_as(x))
    with pytest.raises(InputError, match="unknown baseline 'noise'; valid: blur, zeros") as err:
        make_baseline(x, "noise")
    assert one_line(err)
    with pytest.raises(InputError, match="does not broadcast"):
        make_baseline(x, torch.zeros(3, 3, 8, 8))
    with pytest.raises(InputError, match="finite"):
        make_baseline(x, float("inf"))


def test_composite_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]])  # (1, 2, 2, 2)
    base = torch.full_like(x, 10.0)
    mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])  # (1, 1, 2, 2): shared by both channels
    out = composite(x, mask, base)
    expected = torch.tensor([[[[1.0, 10.0], [6.5, 10.0]], [[5.0, 10.0], [8.5, 10.0]]]])
    torch.testing.assert_close(out, expected)
    # a bool mask, a constant and a named baseline
    torch.testing.assert_close(composite(x, mask > 0.7, 0.0), x * (mask > 0.7))
    torch.testing.assert_close(composite(x, torch.zeros(1, 1, 2, 2), "zeros"), torch.zeros_like(x))
    torch.testing.assert_close(composite(x, torch.ones(1, 1, 2, 2)), x)  # default baseline: blur, fully masked out


def test_composite_is_differentiable_in_the_mask():
    x, base = images(1, 3, 4, 4, seed=1), images(1, 3, 4, 4, seed=2)
    mask = torch.full((1, 1, 4, 4), 0.5, requires_grad=True)
    composite(x, mask, base).sum().backward()
    torch.testing.assert_close(mask.grad, (x - base).sum(dim=1, keepdim=True))


def test_composite_refuses_a_mask_that_does_not_fit():
    with pytest.raises(InputError, match=r"mask of shape \(1, 1, 3, 3\) does not broadcast") as err:
        composite(images(1, 3, 4, 4), torch.ones(1, 1, 3, 3), "zeros")
    assert one_line(err)
