import pytest
import timm
import torch
import torchvision
from torch import nn

from sparsex.errors import InputError, SparsexError, UnknownNameError
from sparsex.explainers import (
    EXPLAINERS,
    Explainer,
    GradCAMExplainer,
    OcclusionExplainer,
    create_explainer,
    list_explainers,
)

METHODS = ["gradcam", "integrated-gradients", "occlusion", "saliency"]
FAST = {"integrated-gradients": {"n_steps": 8}, "occlusion": {"window": 2, "stride": 2}}


def one_line(error: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(error.value) and str(error.value) != ""


class TinyCNN(nn.Module):
    """conv-ReLU(in place)-conv-BN-ReLU-pool-linear, 3 classes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x):
        return self.head(self.bn(self.conv2(self.act1(self.conv1(x)))))


class OnePixel(nn.Module):
    """Logits depend only on pixel (2, 3) of channel 1: ``[2 v, -v, 0]``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        v = x[:, 1, 2, 3]
        return torch.stack([self.scale * v, -v, torch.zeros_like(v)], dim=1)


class Quadrant(nn.Module):
    """Class 0's logit is the sum of the top-left 4x4 quadrant of an 8x8 image; class 1's is 0."""

    def forward(self, x):
        s = x[:, :, :4, :4].sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


class PatchCAM(nn.Module):
    """An identity 1x1 conv, ReLU, spatial sum: class 0's logit is the image's total brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()

    def forward(self, x):
        s = torch.relu(self.conv(x)).sum(dim=(1, 2, 3))
        return torch.stack([s, -s], dim=1)


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_registry_lists_the_attribution_methods():
    assert set(METHODS) <= set(list_explainers())
    assert all(EXPLAINERS.get(name).description for name in METHODS)
    with pytest.raises(UnknownNameError, match="unknown explainer 'salincy' \\(did you mean 'saliency'\\?\\); valid names: ") as err:
        create_explainer("salincy", TinyCNN())
    assert one_line(err) and all(name in str(err.value) for name in METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_shape_finite_device_and_model_untouched(name, x):
    model = TinyCNN().train()  # left in train mode on purpose: attribute must not update BatchNorm
    stats = model.bn.running_mean.clone()
    explainer = create_explainer(name, model, **FAST.get(name, {}))
    assert isinstance(explainer, Explainer) and explainer.name == name
    with torch.no_grad():  # gradient methods still work inside a caller's no_grad block
        maps = explainer.attribute(x)
    assert maps.shape == (3, 1, 8, 8) and maps.dtype == x.dtype and maps.device == x.device
    assert torch.isfinite(maps).all() and not maps.requires_grad
    assert name == "gradcam" or maps.abs().sum() > 0  # (a random net's Grad-CAM may be all zero after its ReLU)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    torch.testing.assert_close(model.bn.running_mean, stats)


@pytest.mark.parametrize("name", METHODS)
def test_target_is_respected(name, x):
    model = TinyCNN().eval()
    explainer = create_explainer(name, model, **FAST.get(name, {}))
    top = model(x).argmax(dim=1)
    torch.testing.assert_close(explainer.attribute(x), explainer.attribute(x, target=top))
    per_class = [explainer.attribute(x, target=c) for c in range(3)]
    assert not torch.allclose(per_class[0], per_class[2])
    mixed = explainer.attribute(x, target=torch.tensor([2, 0, 1]))
    for i, c in enumerate([2, 0, 1]):
        torch.testing.assert_close(mixed[i], per_class[c][i], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name, settings", [("saliency", {}), ("integrated-gradients", {"n_steps": 16, "baseline": "zeros"}),
                                            ("integrated-gradients", {"n_steps": 16})])
def test_gradient_methods_find_the_only_pixel_that_matters(name, settings, x):
    maps = create_explainer(name, OnePixel(), **settings).attribute(x, target=0)
    flat = maps.abs().flatten(1)
    assert (flat.argmax(dim=1) == 2 * 8 + 3).all()
    assert (flat.sum(dim=1) == flat[:, 2 * 8 + 3]).all()  # exactly zero elsewhere


def test_integrated_gradients_completeness_and_chunking(x):
    model = TinyCNN().eval()
    explainer = create_explainer("integrated-gradients", model, baseline="zeros", n_steps=64, internal_batch_size=None)
    maps = explainer.attribute(x, target=1)
    with torch.no_grad():
        gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(maps.sum(dim=(1, 2, 3)), gap, atol=2e-3, rtol=2e-2)  # channels summed: completeness
    # at most internal_batch_size images per pass: inputs split 2 + 1, one path point per pass
    whole = create_explainer("integrated-gradients", model, n_steps=8, internal_batch_size=None).attribute(x, target=1)
    chunked = create_explainer("integrated-gradients", model, n_steps=8, internal_batch_size=2).attribute(x, target=1)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-4)


def test_gradcam_is_non_negative_and_highlights_the_bright_patch():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 5:8, 5:8] = 1.0
    maps = create_explainer("gradcam", PatchCAM()).attribute(image, target=0)
    assert maps.shape == (1, 1, 8, 8) and (maps >= 0).all()
    assert maps[0, 0, 5:, 5:].min() > 0 and maps[0, 0, :4, :4].max() == 0
    cam = create_explainer("gradcam", TinyCNN().eval())
    assert cam.layer == "conv2"  # the last Conv2d
    for target in range(3):
        assert (cam.attribute(torch.rand(4, 3, 8, 8), target=target) >= 0).all()
    assert create_explainer("gradcam", TinyCNN(), layer="conv1", interpolate_mode="nearest").attribute(
        torch.rand(2, 3, 8, 8)).shape == (2, 1, 8, 8)


def test_gradcam_layer_errors():
    with pytest.raises(InputError, match="unknown layer 'conv3' for gradcam \\(did you mean 'conv2'\\?\\); "
                                         "conv layers of this model: conv1, conv2") as err:
        create_explainer("gradcam", TinyCNN(), layer="conv3")
    assert one_line(err)
    with pytest.raises(InputError, match="has no nn.Conv2d"):
        GradCAMExplainer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    explainer = GradCAMExplainer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), layer="1")  # a layer without a map
    with pytest.raises(InputError, match="must output a feature map") as err:
        explainer.attribute(torch.rand(2, 1, 2, 2))
    assert one_line(err)


def tiny_vit(name: str = "vit_tiny_patch16_224", **settings) -> nn.Module:
    """A timm ViT on 32x32 images: 8x8 patches on a 4x4 grid, 2 blocks of width 32, 3 classes (random weights)."""
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=3, img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2, **settings)


def test_gradcam_on_a_vit_reads_the_last_blocks_tokens_on_the_patch_grid():
    model = tiny_vit(reg_tokens=2)  # a class token and 2 register tokens before the 16 patch tokens
    assert model.num_prefix_tokens == 3
    explainer = create_explainer("gradcam", model, interpolate_mode="nearest")
    assert explainer.layer == "blocks.1.norm1"  # never the patch embedding's convolution
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = explainer.attribute(images, target=1)
    assert maps.shape == (2, 1, 32, 32) and torch.isfinite(maps).all() and (maps >= 0).all()
    assert (maps.flatten(1).std(dim=1) > 0).all()  # not constant
    # reference: Grad-CAM on norm1's tokens, prefix tokens dropped, patches laid out row by row
    store = {}
    handle = model.blocks[1].norm1.register_forward_hook(lambda m, i, o: store.update(tokens=o))
    logits = model(images.clone().requires_grad_(True))
    handle.remove()
    grads = torch.autograd.grad(logits[:, 1].sum(), store["tokens"])[0]
    acts, grads = (t[:, 3:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2) for t in (store["tokens"].detach(), grads))
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1))
    torch.testing.assert_close(maps[:, 0, ::8, ::8], cam, atol=1e-6, rtol=1e-4)  # nearest: one 8x8 block per patch
    assert not torch.allclose(maps, explainer.attribute(images, target=2))


def test_gradcam_finds_vits_by_structure():
    deit = tiny_vit("deit_tiny_distilled_patch16_224")  # class and distillation tokens
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = create_explainer("gradcam", deit).attribute(images)
    assert maps.shape == (2, 1, 32, 32) and (maps.flatten(1).std(dim=1) > 0).all()
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None, image_size=32, num_classes=3)  # 2x2 patches of 16
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts the head at zero: every gradient would be 0
    explainer = create_explainer("gradcam", vit)
    assert explainer.layer == "encoder.layers.encoder_layer_11.ln_1"
    maps = explainer.attribute(images)
    assert maps.shape == (2, 1, 32, 32) and (maps.flatten(1).std(dim=1) > 0).all()
    # a classifier on a ViT backbone, under its wrapper attributes; a CNN backbone keeps its last conv
    from sparsex.backbones import create_backbone
    from sparsex.models.base import create_model
    from sparsex.models.classifier import ImageClassifier

    for name, layer in [("vit_tiny_patch16_224", "backbone.model.blocks.11.norm1"), ("resnet18", "backbone.model.layer4.1.conv2")]:
        backbone = create_backbone(name, image_size=32)
        model = ImageClassifier(backbone, create_model("linear-probe", in_channels=backbone.info.channels, num_classes=3))
        explainer = create_explainer("gradcam", model)
        assert explainer.layer == layer
        assert explainer.attribute(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_occlusion_highlights_the_deciding_region():
    x = torch.ones(2, 1, 8, 8)
    maps = create_explainer("occlusion", Quadrant(), window=2, stride=2, baseline="zeros").attribute(x, target=0)
    assert (maps[:, :, :4, :4] == 4.0).all()  # each 2x2 window inside the quadrant drops the logit by 4
    assert (maps[:, :, 4:, :] == 0).all() and (maps[:, :, :, 4:] == 0).all()


def test_occlusion_window_defaults_and_batching(x):
    explainer = OcclusionExplainer(TinyCNN().eval())
    assert explainer.window_and_stride(28, 28) == ((4, 4), (2, 2))
    assert explainer.window_and_stride(224, 200) == ((25, 25), (12, 12))
    assert explainer.window_and_stride(8, 8) == ((1, 1), (1, 1))
    model = TinyCNN().eval()
    whole = create_explainer("occlusion", model, window=3, stride=2, internal_batch_size=None).attribute(x)
    small = create_explainer("occlusion", model, window=3, stride=2, internal_batch_size=2).attribute(x)
    torch.testing.assert_close(small, whole)
    with pytest.raises(InputError, match="larger than the images"):
        create_explainer("occlusion", model, window=9).attribute(x)
    with pytest.raises(InputError, match="must not exceed the window"):
        create_explainer("occlusion", model, window=2, stride=3).attribute(x)


@pytest.mark.parametrize("inputs, target, message", [
    (torch.full((2, 3, 8, 8), float("nan")), None, "inputs contain NaN"),
    (torch.rand(3, 8, 8), None, r"inputs must have shape \(B, C, H, W\)"),
    (torch.zeros(0, 3, 8, 8), None, "every size >= 1"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), None, "floating-point"),
    (torch.rand(2, 3, 8, 8), 3, "target class 3 is out of range: the model has 3 classes"),
    (torch.rand(2, 3, 8, 8), torch.tensor([0, 5]), "target class 5 is out of range"),
    (torch.rand(2, 3, 8, 8), [0, 1, 2], r"one per image \(2\)"),
    (torch.rand(2, 3, 8, 8), 0.5, "target must be an integer class"),
])
@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs_give_one_line_errors(name, inputs, target, message):
    explainer = create_explainer(name, TinyCNN(), **FAST.get(name, {}))
    with pytest.raises(InputError, match=message) as err:
        explainer.attribute(inputs, target=target)
    assert one_line(err)


@pytest.mark.parametrize("name, settings, error, message", [
    ("saliency", {"n_steps": 3}, SparsexError, "unknown saliency setting\\(s\\) n_steps; valid: \\(none\\)"),
    ("integrated-gradients", {"steps": 3}, SparsexError, "unknown integrated-gradients setting\\(s\\) steps; valid: n_steps, "),
    ("integrated-gradients", {"n_steps": 0}, InputError, "n_steps must be a positive integer"),
    ("integrated-gradients", {"baseline": "noise"}, InputError, "baseline must be one of blur, zeros"),
    ("integrated-gradients", {"method": "simpson"}, InputError, "method must be one of gausslegendre"),
    ("integrated-gradients", {"sigma": -1}, InputError, "sigma"),
    ("occlusion", {"window": (2, 0)}, InputError, "window must be a positive integer"),
    ("occlusion", {"internal_batch_size": 0}, InputError, "internal_batch_size"),
    ("gradcam", {"interpolate_mode": "linear"}, InputError, "interpolate_mode must be one of bilinear"),
])
def test_bad_settings_give_one_line_errors(name, settings, error, message):
    with pytest.raises(error, match=message) as err:
        create_explainer(name, TinyCNN(), **settings)
    assert one_line(err)


def test_model_must_be_a_module():
    with pytest.raises(InputError, match="model must be a torch.nn.Module") as err:
        create_explainer("saliency", lambda x: x)
    assert one_line(err)


def test_a_subclass_only_writes_attribute_and_its_shape_is_checked(x):
    class Brightness(Explainer):
        def _attribute(self, inputs, targets):
            return inputs.mean(dim=1, keepdim=True) * (targets + 1).view(-1, 1, 1, 1)

    maps = Brightness(TinyCNN()).attribute(x, target=torch.tensor([0, 1, 2]))
    torch.testing.assert_close(maps[2], 3 * x[2].mean(dim=0, keepdim=True))

    class Wrong(Explainer):
        def _attribute(self, inputs, targets):
            return inputs

    with pytest.raises(RuntimeError, match=r"Wrong returned shape \(3, 3, 8, 8\), expected \(3, 1, 8, 8\)"):
        Wrong(TinyCNN()).attribute(x)


def test_inputs_must_be_on_the_models_device(x):
    explainer = create_explainer("saliency", TinyCNN().to("meta"))
    with pytest.raises(InputError, match="inputs are on cpu but the model is on meta") as err:
        explainer.attribute(x)
    assert one_line(err)
