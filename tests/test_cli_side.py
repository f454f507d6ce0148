"""End-to-end: `sparsex train side|infodisent` and `sparsex explain prototypes` on a tiny part world."""

import json

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run

DATA = ["--data", "parts", "--backbone", "small-cnn", "--data-options", "image_size=48", "--data-options", "train_size=48",
        "--data-options", "val_size=24", "--data-options", "test_size=24", "--set", "expanded_channels=6", "--set", "gallery_k=2"]
TINY = [*DATA, "--set", "pretrain_epochs=2", "--set", "finetune_epochs=1", "--set", "calibrate_epochs=1",
        "--prune-k", "2", "--quiet"]


@pytest.fixture(scope="module")
def side_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "side"
    code = None
    try:
        from sparsex.cli import main

        main(["train", "side", "--out", str(out), *TINY])
    except SystemExit as e:
        code = e.code
    assert code in (None, 0)
    return out


def test_train_side_writes_the_run_folder(side_run):
    metrics = json.loads((side_run / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["pretrain", "prune", "finetune", "calibrate", "offset"]
    assert json.loads((side_run / "config.json").read_text())["prune_k"] == 2
    assert (side_run / "checkpoint" / "model.safetensors").is_file() and (side_run / "stages.md").is_file()


def test_rerun_resumes_and_config_file_is_read(capsys, side_run, tmp_path):
    code, out, _ = run(capsys, "train", "side", "--out", str(side_run), *TINY)
    assert code == 0 and "accuracy" in out  # nothing retrained: the finished run is reported again
    config = tmp_path / "side.json"
    config.write_text(json.dumps({"prune_k": 3}))
    code, _, err = run(capsys, "train", "side", "--out", str(side_run), *TINY[:-3], "--config", str(config), "--quiet")
    assert_one_line_error(code, err, "other settings .*prune_k.*--overwrite")


def test_explain_side(capsys, side_run, tmp_path):
    image = tmp_path / "bird.png"
    Image.new("RGB", (48, 48), (200, 180, 160)).save(image)
    code, out, _ = run(capsys, "explain", "prototypes", "--model", str(side_run), "--image", str(image),
                       "--out", str(tmp_path / "exp"), "--quiet")
    assert code == 0 and (tmp_path / "exp" / "explanation.png").is_file()
    explanation = json.loads((tmp_path / "exp" / "explanation.json").read_text())
    assert explanation["predictions"][0]["class"].startswith("class_") and "target" in explanation


def test_train_infodisent(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "infodisent", "--out", str(tmp_path / "dense"), *DATA, "--epochs", "2", "--quiet")
    assert code == 0 and "infodisent" in out
    assert [s["stage"] for s in json.loads((tmp_path / "dense" / "metrics.json").read_text())["stages"]] == ["train"]
    assert json.loads((tmp_path / "dense" / "checkpoint" / "config.json").read_text())["family"] == "infodisent"


@pytest.mark.parametrize("args, pattern", [
    (["--stages", "pretrain,polish"], "unknown SIDE stage 'polish'"),
    (["--set", "expanded_channels=2", "--prune-k", "9"], r"prune_k A=9 exceeds the number of prototypes \(4"),
    (["--set", "epochs=3"], "unknown SIDE setting.*epochs"),
    (["--config", "{tmp}/missing.json"], "config file .*missing.json is missing"),
    (["--data", "imagenet"], "unknown dataset 'imagenet'"),
])
def test_train_bad_input(capsys, tmp_path, args, pattern):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run(capsys, "train", "side", "--out", str(tmp_path / "r"), *TINY, *args)
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_explain_bad_input(capsys, side_run, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    for image, pattern in [(tmp_path / "absent.png", "image file not found"), (tmp_path / "notes.txt", "not an image")]:
        code, _, err = run(capsys, "explain", "prototypes", "--model", str(side_run), "--image", str(image),
                           "--out", str(tmp_path / "e"))
        assert_one_line_error(code, err, pattern)
        assert not (tmp_path / "e").exists()
    code, _, err = run(capsys, "explain", "prototypes", "--model", str(tmp_path), "--image", str(tmp_path / "notes.txt"),
                       "--out", str(tmp_path / "e"))
    assert_one_line_error(code, err, "checkpoint")


def test_explain_refuses_a_model_without_prototypes(capsys, tmp_path):
    from torch import nn

    from sparsex.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), "vsc", {"model": {"name": "vsc"}})
    (tmp_path / "x.png").write_bytes(b"")
    code, _, err = run(capsys, "explain", "prototypes", "--model", str(tmp_path / "ck"), "--image",
                       str(tmp_path / "x.png"), "--out", str(tmp_path / "e"))
    assert_one_line_error(code, err, r"holds a 'vsc' model, not a prototype model \(side, infodisent, protosvit\)")


def test_a_run_travels_with_moved_or_missing_data(capsys, tmp_path, monkeypatch):
    """Paths in a run are absolute; --root points at moved training data; without it the
    prediction is still explained, without training-set patches, with one warning."""
    import shutil
    from pathlib import Path

    from sparsex.partworld import PartWorldConfig, write_parts_tree

    monkeypatch.chdir(tmp_path)  # the run is named by a relative path
    write_parts_tree(tmp_path / "data", PartWorldConfig(image_size=48, train_size=48, val_size=0, test_size=24), progress=False)
    code, _, err = run(capsys, "train", "side", "--data", "imagefolder", "--root", str(tmp_path / "data"),
                       "--data-options", "image_size=48", "--backbone", "small-cnn", "--set", "expanded_channels=6",
                       "--set", "pretrain_epochs=1", "--set", "finetune_epochs=1", "--set", "calibrate_epochs=1",
                       "--prune-k", "2", "--out", "rel-run", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "rel-run" / "config.json").read_text())["root"] == str((tmp_path / "data").resolve())
    checkpoint = json.loads((tmp_path / "rel-run" / "checkpoint" / "config.json").read_text())["config"]
    assert Path(checkpoint["cache_dir"]).is_absolute() and Path(checkpoint["data"]["root"]).is_absolute()
    shutil.move(tmp_path / "data", tmp_path / "moved")
    (tmp_path / "rel-run" / "checkpoint" / "gallery.safetensors").unlink()  # forces the training data to be read
    image = next((tmp_path / "moved" / "test").rglob("*.png"))
    code, out, _ = run(capsys, "explain", "prototypes", "--model", str(tmp_path / "rel-run"), "--image", str(image),
                       "--out", str(tmp_path / "e1"), "--quiet")
    assert code == 0 and "warning:" in out and "training-set patches" in out
    assert json.loads((tmp_path / "e1" / "explanation.json").read_text())["k"] == 0
    code, out, _ = run(capsys, "explain", "prototypes", "--model", str(tmp_path / "rel-run"), "--image", str(image),
                       "--root", str(tmp_path / "moved"), "--out", str(tmp_path / "e2"), "--k", "2", "--quiet")
    assert code == 0 and "warning:" not in out
    assert json.loads((tmp_path / "e2" / "explanation.json").read_text())["k"] == 2
