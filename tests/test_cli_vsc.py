"""End-to-end: `sparsex train vsc` and `sparsex analyze vsc` on the 8x8 digits, and their bad input."""

import json

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run

TINY = ["--data", "digits", "--latent-dim", "8", "--lambda-jsd", "10", "--epochs", "2", "--set", "hidden_dim=32",
        "--set", "batch_size=40", "--set", "probe_max_iter=50", "--quiet"]


@pytest.fixture(scope="module")
def vsc_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "vsc"
    code = None
    try:
        from sparsex.cli import main

        main(["train", "vsc", "--out", str(out), *TINY])
    except SystemExit as e:
        code = e.code
    assert code in (None, 0)
    return out


def test_help(capsys):
    for args in [["train", "vsc"], ["analyze"], ["analyze", "vsc"]]:
        code, out, _ = run(capsys, *args, "--help")
        assert code == 0 and "Usage: sparsex" in out
    assert "--lambda-jsd" in run(capsys, "train", "vsc", "--help")[1]


def test_train_vsc_writes_the_run_folder(vsc_run):
    metrics = json.loads((vsc_run / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["epoch1", "epoch2"]
    assert {"bce", "active_dims", "jsd_within", "probe_accuracy", "correlation_matrix"} <= metrics["final"].keys()
    config = json.loads((vsc_run / "config.json").read_text())
    assert config["latent_dim"] == 8 and config["lambda_jsd"] == 10 and config["data"] == "digits"
    assert (vsc_run / "checkpoint" / "model.safetensors").is_file() and (vsc_run / "stages.md").is_file()


def test_rerun_resumes_and_other_settings_are_refused(capsys, vsc_run):
    code, out, _ = run(capsys, "train", "vsc", "--out", str(vsc_run), *TINY)
    assert code == 0 and "vsc" in out and "jsd_within" in out
    code, _, err = run(capsys, "train", "vsc", "--out", str(vsc_run), *TINY, "--alpha", "0.1")
    assert_one_line_error(code, err, "other settings .*alpha.*--overwrite")


def test_analyze_vsc(capsys, vsc_run, tmp_path):
    code, out, _ = run(capsys, "analyze", "vsc", str(vsc_run), "--out", str(tmp_path / "a"), "--dims", "0,3",
                       "--classes", "1,7", "--steps", "5", "--quiet")
    assert code == 0 and "probe_accuracy" in out
    for name in ["traversals.png", "gamma_heatmap.png", "class_correlation.png", "reconstructions.png", "dimensions.md"]:
        assert (tmp_path / "a" / name).is_file(), name
    with Image.open(tmp_path / "a" / "traversals.png") as image:
        assert image.size[0] > 100
    analysis = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert analysis["traversal"]["dims"] == [0, 3] and len(analysis["traversal"]["values"]) == 5
    assert len(analysis["dimensions"]) == 8 and len(analysis["metrics"]["correlation_matrix"]) == 10
    assert "| dim | kind | active for | mean gamma |" in (tmp_path / "a" / "dimensions.md").read_text()
    code, _, _ = run(capsys, "analyze", "vsc", str(vsc_run / "checkpoint"), "--quiet")  # default: <run>/analysis
    assert code == 0 and (vsc_run / "analysis" / "traversals.png").is_file()


@pytest.mark.parametrize("args, pattern", [
    (["--lambda-jsd", "-1"], r"lambda_jsd \(0 is plain VSC\) must be a finite number >= 0, got -1"),
    (["--set", "batch_size=8"], r"batch size 8 is too small to hold same-class pairs of 10 classes: need at least 20"),
    (["--data", "fashion-mnist", "--root", "{tmp}"], "not found in .*apt-get install dataset-fashion-mnist"),
    (["--data", "mnist", "--root", "{tmp}"], "not found in .*--root"),
    (["--data", "imagefolder", "--root", "{tmp}/folder"], "one fixed size.*image_size"),
    (["--data", "imagefolder", "--root", "{tmp}/notes", "--data-options", "image_size=8"], "not an image"),
    (["--arch", "transformer"], "unknown VSC architecture 'transformer'"),
    (["--set", "lamda=1"], "unknown VSC setting.*lamda"),
])
def test_train_bad_input(capsys, tmp_path, args, pattern):
    for name, size in [("a", (10, 12)), ("b", (14, 9))]:  # an image folder with images of two sizes
        (tmp_path / "folder" / name).mkdir(parents=True)
        Image.new("L", size, 128).save(tmp_path / "folder" / name / "x.png")
        (tmp_path / "notes" / name).mkdir(parents=True)
        (tmp_path / "notes" / name / "x.png").write_text("not an image")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run(capsys, "train", "vsc", "--out", str(tmp_path / "r"), *TINY, *args)
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "r").exists()


def test_analyze_bad_input(capsys, vsc_run, tmp_path):
    for args, pattern in [
        (["--dims", "99"], r"latent dimension of this model must be an integer in \[0, 7\], got 99"),
        (["--dims", "x"], "--dims takes latent dimension numbers"),
        (["--classes", "Sandal"], "unknown class 'Sandal'; this model's classes: 0, 1"),
        (["--steps", "1"], "steps must be an integer >= 2"),
    ]:
        code, _, err = run(capsys, "analyze", "vsc", str(vsc_run), "--out", str(tmp_path / "a"), *args)
        assert_one_line_error(code, err, pattern)
        assert not (tmp_path / "a").exists()
    code, _, err = run(capsys, "analyze", "vsc", str(tmp_path / "absent"))
    assert_one_line_error(code, err, "checkpoint folder not found")


def test_analyze_refuses_another_family(capsys, tmp_path):
    from torch import nn

    from sparsex.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), "side", {"model": {"name": "side"}})
    code, _, err = run(capsys, "analyze", "vsc", str(tmp_path / "ck"))
    assert_one_line_error(code, err, "holds a 'side' model, not a 'vsc' model")
