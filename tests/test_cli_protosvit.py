"""End-to-end: `sparsex train protosvit` and `sparsex explain protosvit` on a tiny part world with a
random-weight ViT backbone."""

import json

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run

TINY = ["--data", "parts", "--backbone", "vit_tiny_patch16_224", "--no-pretrained", "--set", "image_size=32",
        "--data-options", "image_size=32", "--data-options", "train_size=24", "--data-options", "test_size=12",
        "--num-prototypes", "6", "--set", "embed_dim=8", "--set", "epochs=1", "--set", "gallery_k=2", "--quiet"]


@pytest.fixture(scope="module")
def protosvit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "protosvit"
    code = None
    try:
        from sparsex.cli import main

        main(["train", "protosvit", "--out", str(out), *TINY])
    except SystemExit as e:
        code = e.code
    assert code in (None, 0)
    return out


def test_train_protosvit_writes_the_run_folder(protosvit_run):
    metrics = json.loads((protosvit_run / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["train", "prune"]
    config = json.loads((protosvit_run / "config.json").read_text())
    assert config["num_prototypes"] == 6 and config["backbone"] == "vit_tiny_patch16_224"
    assert (protosvit_run / "checkpoint" / "model.safetensors").is_file()


def test_explain_protosvit(capsys, protosvit_run, tmp_path):
    image = tmp_path / "bird.png"
    Image.new("RGB", (64, 48), (200, 180, 160)).save(image)  # resized and centre-cropped to 32x32
    code, out, _ = run(capsys, "explain", "prototypes", "--model", str(protosvit_run), "--image", str(image),
                       "--out", str(tmp_path / "exp"), "--k", "2", "--quiet")
    assert code == 0 and (tmp_path / "exp" / "explanation.png").is_file()
    explanation = json.loads((tmp_path / "exp" / "explanation.json").read_text())
    assert explanation["feature_size"] == [2, 2] and explanation["image_size"] == [32, 32]
    assert explanation["target"]["bias"] == pytest.approx(0.0, abs=1e-5)  # no bias: prototypes explain the logit
    for prototype in explanation["prototypes"]:
        assert len(prototype["gallery"]) == 2


@pytest.mark.parametrize("args, pattern", [
    (["--stages", "train,polish"], "unknown ProtoS-ViT stage 'polish'"),
    (["--num-prototypes", "0"], "num_prototypes must be a positive integer"),
    (["--set", "prune_k=3"], "unknown ProtoS-ViT setting.*prune_k"),
    (["--weights", "{tmp}/missing.safetensors"], "missing.safetensors"),
    (["--set", "image_size=48", "--data-options", "image_size=48", "--set", "layer=99"], "layer"),
])
def test_train_bad_input(capsys, tmp_path, args, pattern):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run(capsys, "train", "protosvit", "--out", str(tmp_path / "r"), *TINY, *args)
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_vit_input_size_mismatch_names_the_needed_size(capsys, protosvit_run, tmp_path):
    """A checkpoint whose ViT was built for 32 px explains any image: it is resized to 32 px. A
    backbone asked for features at the wrong size says which size it needs."""
    import torch

    from sparsex.backbones import create_backbone
    from sparsex.errors import InputError

    backbone = create_backbone("vit_tiny_patch16_224", pretrained=False, image_size=32)
    with pytest.raises(InputError, match="needs 32x32 inputs"):
        backbone(torch.rand(1, 3, 48, 48))
