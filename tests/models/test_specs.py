"""Classifiers from a model spec (run folder, timm:NAME, torchvision:NAME, lite0-imagenet) or any
module (wrap_classifier), on raw [0, 1] images, with their preprocessing and class names."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_sample_image
from torch import nn

import sparsex
from sparsex.errors import CheckpointError, DataError, InputError, SparsexError, UnknownNameError
from sparsex.models.classifier import ImageClassifier
from sparsex.models.specs import Preprocess, WrappedClassifier, load_classifier, wrap_classifier

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def save_png(path, height, width, mode="RGB", seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3 if mode == "RGB" else 1), dtype=np.uint8)
    Image.fromarray(pixels if mode == "RGB" else pixels[..., 0], mode).save(path)
    return path


def tiny_cnn(in_channels=1, classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))


# --- Preprocess --------------------------------------------------------------------------------

def test_preprocess_resizes_the_shorter_side_then_crops_the_centre(tmp_path):
    photo = save_png(tmp_path / "wide.png", 20, 40)
    image = Preprocess(resize=10, crop=8).load(photo)
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    expected = np.asarray(Image.open(photo).resize((20, 10), Image.BILINEAR).crop((6, 1, 14, 9)), np.float32) / 255
    assert torch.allclose(image, torch.from_numpy(expected).permute(2, 0, 1))
    assert Preprocess(resize=10).load(photo).shape == (3, 10, 20)  # no crop: the aspect ratio is kept
    assert Preprocess(crop=8).load(photo).shape == (3, 8, 8)  # no resize: the shorter side becomes the crop
    assert Preprocess().load(photo).shape == (3, 20, 40)
    bicubic = Preprocess(resize=10, crop=8, interpolation="bicubic").load(photo)
    assert bicubic.shape == (3, 8, 8) and not torch.equal(bicubic, image)


def test_preprocess_converts_channels_and_defaults_mean_and_std_per_channel(tmp_path):
    grey = Preprocess(channels=3, crop=6).load(save_png(tmp_path / "grey.png", 6, 6, mode="L"))
    assert grey.shape == (3, 6, 6) and torch.equal(grey[0], grey[2])
    assert Preprocess(channels=1).load(save_png(tmp_path / "rgb.png", 5, 7)).shape == (1, 5, 7)
    one = Preprocess(channels=1)
    assert (one.mean, one.std, one.input_size) == ((0.0,), (1.0,), None)
    assert Preprocess(crop=12).input_size == (12, 12)


def test_preprocess_round_trips_through_json():
    preprocess = Preprocess(resize=35, crop=32, mean=[0.5, 0.4, 0.3], std=(0.2, 0.2, 0.25), interpolation="bicubic")
    assert preprocess.mean == (0.5, 0.4, 0.3)
    assert Preprocess.from_dict(json.loads(json.dumps(preprocess.to_dict()))) == preprocess


@pytest.mark.parametrize("settings, message", [
    ({"resize": 0}, "preprocess resize .* must be a positive integer"),
    ({"crop": 2.5}, "preprocess crop .* must be a positive integer"),
    ({"channels": 2}, "preprocess channels must be 1 or 3, got 2"),
    ({"mean": (0.5, 0.5)}, r"preprocess mean must be 3 numbers \(one per channel\)"),
    ({"std": (0.2, 0.0, 0.2)}, r"preprocess std \(per channel\) must be a finite number > 0"),
    ({"channels": 1, "std": 0.5}, r"preprocess std must be 1 numbers"),
    ({"interpolation": "nearest"}, "preprocess interpolation must be one of bilinear, bicubic"),
])
def test_preprocess_bad_settings(settings, message):
    with pytest.raises(SparsexError, match=message):
        Preprocess(**settings)


def test_preprocess_bad_dict_and_bad_file(tmp_path):
    with pytest.raises(InputError, match="unknown preprocess setting.*size; valid: resize, crop"):
        Preprocess.from_dict({"size": 3})
    (tmp_path / "note.png").write_text("not an image")
    with pytest.raises(DataError, match="not an image or corrupt"):
        Preprocess().load(tmp_path / "note.png")


# --- wrap_classifier ---------------------------------------------------------------------------

def test_wrap_classifier_normalises_raw_images_and_counts_the_classes():
    cnn = tiny_cnn().train()
    model = wrap_classifier(cnn, Preprocess(crop=8, mean=[0.5], std=[0.25], channels=1))
    assert isinstance(model, WrappedClassifier) and model.module is cnn and cnn.training  # the probe restored its mode
    assert (model.classes, model.num_classes, model.input_size) == (["0", "1", "2"], 3, (8, 8))
    x = torch.rand(2, 1, 8, 8)
    cnn.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), cnn((x - 0.5) / 0.25))
    assert model.layer("module.0") is cnn[0] and "module.5" in model.layer_names()


def test_wrap_classifier_defaults_to_no_normalisation_and_the_first_conv_channels():
    cnn = tiny_cnn(in_channels=3).eval()
    model = wrap_classifier(cnn, class_names=["cat", "dog", "owl"], input_size=(6, 10))
    assert model.preprocess == Preprocess(channels=3) and model.input_size == (6, 10) and model.classes[2] == "owl"
    x = torch.rand(1, 3, 6, 10)
    with torch.no_grad():
        assert torch.equal(model(x), cnn(x))
    assert sparsex.wrap_classifier is wrap_classifier and sparsex.load_classifier is load_classifier


def test_wrap_classifier_bad_input():
    cnn = tiny_cnn()
    with pytest.raises(InputError, match="model must be a torch.nn.Module"):
        wrap_classifier(lambda x: x, input_size=(8, 8))
    with pytest.raises(InputError, match=r"needs the model's input size: pass input_size=\(H, W\)"):
        wrap_classifier(cnn)
    with pytest.raises(InputError, match=r"input_size \(6, 6\) disagrees with the preprocess crop \(8, 8\)"):
        wrap_classifier(cnn, Preprocess(crop=8, channels=1), input_size=(6, 6))
    with pytest.raises(InputError, match=r"class_names must be a list of 3 names \(the model gives 3 logits\), got 2"):
        wrap_classifier(cnn, class_names=["a", "b"], input_size=(8, 8))
    with pytest.raises(InputError, match=r"the classifier fails on an image \(1, 3, 8, 8\): RuntimeError"):
        wrap_classifier(cnn, Preprocess(crop=8), input_size=(8, 8))  # 3 channels into a 1-channel conv
    with pytest.raises(InputError, match=r"to logits \(B, K\); got \(1, 4, 8, 8\)"):
        wrap_classifier(cnn[:2], input_size=(8, 8))
    model = wrap_classifier(cnn, input_size=(8, 8))
    with pytest.raises(InputError, match="images must have 1 channels, got 3"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(InputError, match=r"no layer 'modul.0'; did you mean module.0.*last convolutions: module.0;"):
        model.layer("modul.0")


# --- timm ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, mean, crop_pct", [("resnet18", IMAGENET_MEAN, 0.95),
                                                  ("vit_tiny_patch16_224", (0.5, 0.5, 0.5), 0.9)])
def test_timm_weights_round_trip_with_the_head_size_from_the_file(tmp_path, name, mean, crop_pct):
    original = load_classifier(f"timm:{name}", num_classes=4, image_size=32)
    save_file(original.module.state_dict(), tmp_path / "w.safetensors")
    model = load_classifier(f"timm:{name}", weights=tmp_path / "w.safetensors", image_size=32)
    assert isinstance(model, WrappedClassifier) and (model.num_classes, model.classes) == (4, ["0", "1", "2", "3"])
    assert model.preprocess == Preprocess(resize=int(32 / crop_pct), crop=32, mean=mean, std=original.preprocess.std,
                                          interpolation="bicubic")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


def test_timm_defaults_imagenet_preprocessing_and_class_names_with_overrides():
    model = load_classifier("timm:resnet18", image_size=40, mean=(0.5, 0.5, 0.5), std=[0.5, 0.5, 0.5])
    assert model.preprocess == Preprocess(resize=42, crop=40, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic")
    assert model.num_classes == 1000 and model.classes[0] == "tench, Tinca tinca" and model.classes[985] == "daisy"


# --- torchvision --------------------------------------------------------------------------------

def test_torchvision_preprocessing_names_and_weights(tmp_path):
    imagenet = load_classifier("torchvision:mobilenet_v3_small")
    assert imagenet.preprocess == Preprocess(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert imagenet.num_classes == 1000 and imagenet.classes[698] == "palace"
    small = load_classifier("torchvision:mobilenet_v3_small", num_classes=5, image_size=64)
    assert small.preprocess.resize == 73 and small.preprocess.crop == 64  # 64 * 256 / 224, floored
    assert small.classes == ["0", "1", "2", "3", "4"]
    torch.save({"state_dict": small.module.state_dict()}, tmp_path / "w.pth")
    loaded = load_classifier("torchvision:mobilenet_v3_small", weights=tmp_path / "w.pth", image_size=64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert loaded.num_classes == 5 and torch.equal(loaded(x), small(x))


# --- run folders -------------------------------------------------------------------------------

def test_run_folder_gives_the_trained_classifier_with_its_preprocess(digits_classifier):
    run, _ = digits_classifier
    model = load_classifier(run)
    assert isinstance(model, ImageClassifier) and model.classes == [str(i) for i in range(10)]
    assert model.preprocess == Preprocess(resize=8, crop=8, channels=1)
    with pytest.raises(InputError, match="weights, image_size cannot be set for a run folder"):
        load_classifier(run, weights="w.safetensors", image_size=32)


# --- bad specs and weights ---------------------------------------------------------------------

def test_bad_specs_name_the_forms_and_the_closest_names():
    with pytest.raises(UnknownNameError, match="model spec 'no-such-run': no such folder, and not a model name; forms: "
                                               "RUN_FOLDER .*timm:NAME, torchvision:NAME, lite0-imagenet"):
        load_classifier("no-such-run")
    with pytest.raises(InputError, match="model spec must be a string or a path, got int"):
        load_classifier(3)
    with pytest.raises(UnknownNameError, match="unknown timm model 'resnt18'; did you mean resnet18"):
        load_classifier("timm:resnt18")
    with pytest.raises(UnknownNameError, match="unknown torchvision classification model 'mobilenet_v3_smal'; "
                                               "did you mean mobilenet_v3_small"):
        load_classifier("torchvision:mobilenet_v3_smal")
    with pytest.raises(UnknownNameError, match="unknown torchvision classification model 'fasterrcnn_resnet50_fpn'"):
        load_classifier("torchvision:fasterrcnn_resnet50_fpn")  # a detector, not a classifier
    with pytest.raises(InputError, match="num_classes must be a positive integer or None, got 0"):
        load_classifier("timm:resnet18", num_classes=0)
    with pytest.raises(InputError, match="lite0-imagenet is the bundled 1000-class ImageNet model"):
        load_classifier("lite0-imagenet", num_classes=10)


def test_weights_that_do_not_fit_are_named(tmp_path):
    head4 = load_classifier("timm:resnet18", num_classes=4, image_size=32)
    save_file(head4.module.state_dict(), tmp_path / "r18.safetensors")
    with pytest.raises(CheckpointError, match=r"num_classes=5 disagrees with weights file .*r18.safetensors: its head "
                                              r"fc.weight \(4, 512\) has 4 classes"):
        load_classifier("timm:resnet18", weights=tmp_path / "r18.safetensors", num_classes=5)
    with pytest.raises(CheckpointError, match="does not match the model; missing keys: layer1.2.bn1.bias"):
        load_classifier("timm:resnet34", weights=tmp_path / "r18.safetensors")
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_classifier("timm:resnet18", weights=tmp_path / "none.safetensors")


# --- lite0-imagenet ----------------------------------------------------------------------------

@pytest.mark.parametrize("photo, label", [("china.jpg", "palace"), ("flower.jpg", "daisy")])
def test_lite0_imagenet_classifies_the_sample_photos(tmp_path, photo, label):
    """Standard evaluation (shorter side 256, centre crop 224, mean = std = 0.5) from the photo file."""
    path = tmp_path / f"{photo}.png"
    Image.fromarray(load_sample_image(photo)).save(path)
    model = load_classifier("lite0-imagenet")
    assert model.preprocess == Preprocess(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    with torch.no_grad():
        top = model(model.preprocess.load(path)[None]).argmax(1).item()
    assert model.classes[top] == label and top == {"palace": 698, "daisy": 985}[label]
