"""``sparsex circuit`` end to end on the tiny digits classifier of conftest (small-cnn on 8x8 images, one epoch)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def trained(digits_classifier, tmp_path_factory):
    """The shared digits classifier (conftest: small-cnn on 8x8 digits, one epoch), a mask explainer
    trained for it (32 images, one epoch) and a digit image file."""
    from sparsex.data import create_dataset
    from sparsex.explainers.minimal_mask import MinimalMask, MinimalMaskConfig
    from sparsex.models.classifier import load_classifier

    classifier = digits_classifier[0]
    root = tmp_path_factory.mktemp("circuit")
    images = create_dataset("digits", split="test").images[:32]
    model, _ = load_classifier(classifier)
    explainer = MinimalMask(model, MinimalMaskConfig(width=4, epochs=1, batch_size=32))
    explainer.fit(images, progress=False)
    explainer.save(root / "explainer", classifier=str(classifier))
    image = root / "digit.png"
    Image.fromarray((images[0, 0].numpy() * 255).astype(np.uint8)).save(image)
    return {"classifier": classifier, "explainer": root / "explainer", "image": image, "root": root}


def test_circuit_writes_json_figure_and_image(capsys, trained, tmp_path):
    out = tmp_path / "circuit"
    code, stdout, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                            "--out", str(out), "--top-k", "4")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"circuit.json", "circuit.png", "image.png"}
    circuit = json.loads((out / "circuit.json").read_text())
    assert circuit["layers"] == ["backbone.model.features.0.0", "backbone.model.features.2.0", "backbone.model.features.4.0"]
    assert circuit["readout"] == "head.linear" and circuit["input"] == "image"
    assert f"{len(circuit['nodes'])} nodes, {len(circuit['edges'])} edges over 3 layers" in stdout
    per_layer = [sum(n["layer"] == layer for n in circuit["nodes"]) for layer in circuit["layers"]]
    assert all(1 <= k <= 4 for k in per_layer)
    target = [n for n in circuit["nodes"] if n["kind"] == "class"]
    assert len(target) == 1 and target[0]["target"] and target[0]["channel"] == circuit["target"] == circuit["predicted"]
    assert Image.open(out / "image.png").size == (8, 8) and Image.open(out / "circuit.png").format == "PNG"

    # explicit target and layers given as blocks; an existing folder needs --overwrite
    args = ["circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]), "--out", str(out),
            "--target", "3", "--layers", "backbone.model.features.2,backbone.model.features.4", "--other-classes", "2"]
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, "already exists.*--overwrite")
    code, _, err = run(capsys, *args, "--overwrite")
    assert code == 0, err
    circuit = json.loads((out / "circuit.json").read_text())
    assert circuit["target"] == 3 and len(circuit["layers"]) == 2 and len(circuit["classes"]) == 3


def test_circuit_of_the_mask_explanation(capsys, trained, tmp_path):
    out = tmp_path / "circuit"
    code, stdout, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                            "--explainer", str(trained["explainer"]), "--out", str(out))
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"circuit.json", "circuit.png", "image.png", "mask.png", "explanation.png"}
    circuit = json.loads((out / "circuit.json").read_text())
    assert circuit["input"] == "explanation" and 0 <= circuit["mask_area"] <= 1 and "on the explanation" in stdout


def test_circuit_bad_input_is_one_line_error(capsys, trained, tmp_path):
    base = ["circuit", "--model", str(trained["classifier"]), "--out", str(tmp_path / "out")]
    image = ["--image", str(trained["image"])]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    cases = [
        (image + ["--layers", "backbone.model.features.9"], r"no layer 'backbone.model.features.9'.*features\.0\.0"),
        (image + ["--layers", "backbone.model.features.0,backbone.model.features.4"], r"not connected channel to channel"),
        (image + ["--target", "10"], r"target class 10 is out of range.*10 classes"),
        (image + ["--top-k", "0"], r"top_k must be a positive integer"),
        (image + ["--share", "1.5"], r"share \(a fraction of each layer's positive score\) must be"),
        (["--image", str(broken)], r"cannot read image"),
        (["--image", str(tmp_path / "missing.png")], r"image file not found"),
    ]
    for extra, pattern in cases:
        code, _, err = run(capsys, *base, *extra)
        assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "out").exists()
    # an explainer trained for another classifier is refused
    other = trained["root"] / "other-explainer"
    if not other.exists():
        from sparsex.explainers.minimal_mask import MinimalMask, MinimalMaskConfig
        from sparsex.models.classifier import load_classifier

        model, _ = load_classifier(trained["classifier"])
        with torch.no_grad():
            model.head.linear.bias.add_(1.0)
        MinimalMask(model, MinimalMaskConfig(width=4, epochs=1)).save(other, classifier=str(trained["classifier"]))
    code, _, err = run(capsys, *base, *image, "--explainer", str(other))
    assert_one_line_error(code, err, "trained for another classifier")


def test_circuit_of_a_timm_model_from_a_weights_file(capsys, tmp_path):
    """A model spec, not a run folder: timm resnet18 with its weights from a safetensors file, 3 classes at 32 px."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(timm.create_model("resnet18", num_classes=3).state_dict(), tmp_path / "resnet18.safetensors")
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "circuit"
    code, stdout, err = run(capsys, "circuit", "--model", "timm:resnet18", "--weights", str(tmp_path / "resnet18.safetensors"),
                            "--image-size", "32", "--image", str(image), "--out", str(out), "--top-k", "3")
    assert code == 0, err
    circuit = json.loads((out / "circuit.json").read_text())
    assert circuit["layers"] == ["module.layer4.1.conv1", "module.layer4.1.conv2", "module.layer4.1"]
    assert circuit["readout"] == "module.fc"
    assert circuit["model"] == "timm:resnet18" and circuit["target"] in (0, 1, 2)
    assert Image.open(out / "image.png").size == (32, 32)
    # zero-ablated around them, these 3 channels per layer keep the logit but not the label: the user is told
    code, stdout, err = run(capsys, "circuit", "--model", "timm:resnet18", "--weights", str(tmp_path / "resnet18.safetensors"),
                            "--image-size", "32", "--image", str(image), "--out", str(out), "--top-k", "3", "--faithfulness",
                            "--ablation", "zero", "--overwrite")
    report = json.loads((out / "faithfulness.json").read_text())
    assert code == 0 and report["clean"]["label"] == 1 and report["sufficiency"]["label"] == 0
    assert "warning: the circuit alone loses the label: at --top-k 3" in stdout and "--select attribution" in stdout


def test_circuit_faithfulness_on_the_digits_classifier(capsys, trained, tmp_path):
    """--faithfulness: faithfulness.json beside circuit.json, the figures printed, each channel's own drop in circuit.json."""
    from sparsex.data import create_dataset

    out = tmp_path / "circuit"
    code, stdout, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                            "--out", str(out), "--faithfulness")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"circuit.json", "circuit.png", "image.png", "faithfulness.json"}
    report = json.loads((out / "faithfulness.json").read_text())
    circuit = json.loads((out / "circuit.json").read_text())
    assert report["reference"] == "blur(x)" and report["reference_images"] == 1 and report["ablation"] == "mean"
    assert report["layers"] == circuit["layers"] and report["random"]["draws"] == 20 and report["images"] == 1
    assert report["per_image"][0]["target"] == circuit["target"] and 0 <= report["sufficiency"]["label"] <= 1
    channels = [n for n in circuit["nodes"] if n["kind"] == "channel"]
    assert channels and all("single_drop" in n and n["necessary"] == (n["single_drop"] >= 0.05) for n in channels)
    assert report["necessary"] == sorted(n["id"] for n in channels if n["necessary"])
    assert "faithfulness (mean ablation over blur(x))" in stdout and "ablating it drops the logit by" in stdout
    assert "necessary channels" in stdout and "faithfulness.json" in stdout
    assert ("the circuit alone loses the label" in stdout) == (report["clean"]["label"] > report["sufficiency"]["label"])

    # a reference folder of digits for the means, zero ablation
    reference = tmp_path / "reference"
    reference.mkdir()
    for i, digit in enumerate(create_dataset("digits", split="train").images[:6]):
        Image.fromarray((digit[0].numpy() * 255).astype(np.uint8)).save(reference / f"{i}.png")
    code, stdout, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                            "--out", str(out), "--faithfulness", "--reference", str(reference), "--overwrite")
    assert code == 0, err
    report = json.loads((out / "faithfulness.json").read_text())
    assert report["reference_images"] == 6 and report["reference"] == str(reference)
    code, stdout, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                            "--out", str(out), "--faithfulness", "--ablation", "zero", "--overwrite")
    assert code == 0, err
    report = json.loads((out / "faithfulness.json").read_text())
    assert report["ablation"] == "zero" and report["reference_images"] == 0 and "zero ablation" in stdout

    # channels picked by attribution from the reference folder's mean, ablated to the same mean
    code, stdout, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                            "--out", str(out), "--select", "attribution", "--reference", str(reference), "--faithfulness",
                            "--overwrite")
    assert code == 0, err
    circuit = json.loads((out / "circuit.json").read_text())
    assert circuit["settings"]["selection"] == "attribution" and circuit["settings"]["steps"] == 16
    assert circuit["settings"]["share"] == 0.6 and circuit["settings"]["top_k"] is None  # the attribution's default size
    assert circuit["reference"] == str(reference)
    channels = [n for n in circuit["nodes"] if n["kind"] == "channel"]
    assert channels and all(n["attribution"] > 0 for n in channels)
    report = json.loads((out / "faithfulness.json").read_text())
    assert report["reference_images"] == 6
    # the default cut: the fewest selected channels that alone keep the label, which the ablation confirms
    assert circuit["settings"]["sufficient"] is True and circuit["sufficient"] == bool(report["sufficiency"]["label"])
    assert len(channels) <= circuit["selected"]
    said = f"kept {len(channels)} of the " if circuit["sufficient"] else "warning: no part of the "
    assert f"{said}{circuit['selected']} selected channels" in stdout
    # a larger share keeps at least as many channels per layer; --top-k caps it (uncut)
    code, _, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                       "--out", str(out), "--select", "attribution", "--reference", str(reference), "--share", "0.95",
                       "--top-k", "2", "--no-sufficient", "--overwrite")
    assert code == 0, err
    capped = json.loads((out / "circuit.json").read_text())
    assert capped["settings"]["share"] == 0.95 and capped["settings"]["top_k"] == 2
    per_layer = {layer: sum(n["layer"] == layer for n in capped["nodes"] if n["kind"] == "channel") for layer in capped["layers"]}
    assert all(0 < count <= 2 for count in per_layer.values())
    assert capped["settings"]["sufficient"] is False and capped["sufficient"] is None and "selected channels" not in _

    # with the mask explainer: whether the mask is empty and whether the explanation keeps the label
    code, stdout, err = run(capsys, "circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]),
                            "--explainer", str(trained["explainer"]), "--out", str(out), "--faithfulness", "--overwrite")
    assert code == 0, err
    report = json.loads((out / "faithfulness.json").read_text())
    explained = report["explanation"]
    assert report["input"] == "explanation" and set(explained) == {"mask_area", "empty", "keeps_label", "predicted"}
    assert explained["empty"] == (explained["mask_area"] == 0)
    assert ("warning" in stdout) == (explained["empty"] or not explained["keeps_label"])


def test_circuit_faithfulness_bad_input_is_one_line_error(capsys, trained, tmp_path):
    base = ["circuit", "--model", str(trained["classifier"]), "--image", str(trained["image"]), "--out", str(tmp_path / "out")]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--faithfulness", "--ablation", "median"], r"ablation must be one of mean, zero"),
        (["--reference", str(empty)], r"--reference sets the mean that --faithfulness and --sufficient ablate to and --select"),
        (["--sufficient", "--reference", str(empty)], r"holds no images"),
        (["--ablation", "zero"], r"--ablation sets how --faithfulness ablates; add --faithfulness"),
        (["--select", "median"], r"selection must be one of activation, attribution"),
        (["--select", "attribution", "--reference", str(empty)], r"holds no images"),
        (["--faithfulness", "--reference", str(empty)], r"holds no images"),
        (["--faithfulness", "--reference", str(tmp_path / "missing")], r"images not found"),
    ]
    for extra, pattern in cases:
        code, _, err = run(capsys, *base, *extra)
        assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "out").exists()
