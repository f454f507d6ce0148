"""End-to-end tests of every ``sparsex`` command on tiny data."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from sparsex.cli import main

TINY_PARTS = ["--image-size", "64", "--train-size", "6", "--val-size", "2", "--test-size", "2", "--quiet"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    import re

    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def test_help_on_every_command(capsys):
    for args in [[], ["datasets"], ["backbones"], ["data"], ["data", "make"], ["data", "preview"], ["features"],
                 ["features", "extract"]]:
        code, out, _ = run(capsys, *args, "--help")
        assert code == 0 and "Usage: sparsex" in out


def test_python_dash_m_entry_point():
    """A fresh interpreter: ``python -m sparsex`` runs, and importing sparsex registers every explainer."""
    result = subprocess.run([sys.executable, "-m", "sparsex", "explainers"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert all(name in result.stdout for name in ("integrated-gradients", "per-image-mask", "minimal-mask", "prototypes"))


def test_datasets_and_backbones_are_listed(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    for name in ["parts", "fashion-mnist", "mnist", "digits", "imagefolder", "cub200"]:
        assert name in out
    code, out, _ = run(capsys, "backbones")
    assert code == 0 and "lite0" in out and "small-cnn" in out and "timm" in out


def test_data_make_parts_writes_tree_and_refuses_to_overwrite(capsys, tmp_path):
    out_dir = tmp_path / "parts"
    code, out, _ = run(capsys, "data", "make", "parts", "--out", str(out_dir), *TINY_PARTS)
    assert code == 0 and "wrote 10 images" in out
    meta = json.loads((out_dir / "meta.json").read_text())
    assert meta["config"]["image_size"] == 64 and len(meta["classes"]) >= 20
    images = sorted((out_dir / "train").rglob("*.png"))
    assert len(images) == 6 and Image.open(images[0]).size == (64, 64)
    before = sorted(p.relative_to(out_dir) for p in out_dir.rglob("*"))

    code, _, err = run(capsys, "data", "make", "parts", "--out", str(out_dir), *TINY_PARTS)
    assert_one_line_error(code, err, "already exists.*--overwrite")
    assert sorted(p.relative_to(out_dir) for p in out_dir.rglob("*")) == before

    code, _, _ = run(capsys, "data", "make", "parts", "--out", str(out_dir), "--seed", "1", "--overwrite", *TINY_PARTS)
    assert code == 0 and json.loads((out_dir / "meta.json").read_text())["config"]["seed"] == 1


def test_data_make_same_seed_gives_identical_bytes(capsys, tmp_path):
    for name in ("a", "b"):
        assert run(capsys, "data", "make", "parts", "--out", str(tmp_path / name), "--max-clutter", "3", *TINY_PARTS)[0] == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 2 * 10 + 1  # images, masks, meta.json
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_data_make_bad_values(capsys, tmp_path):
    code, _, err = run(capsys, "data", "make", "digits", "--out", str(tmp_path / "d"))
    assert_one_line_error(code, err, "only the procedural dataset 'parts'")
    code, _, err = run(capsys, "data", "make", "parts", "--out", str(tmp_path / "p"), "--part-dropout", "1.5")
    assert_one_line_error(code, err, "part_dropout")
    assert not (tmp_path / "p").exists()


def test_data_preview_with_and_without_masks(capsys, tmp_path):
    code, out, _ = run(capsys, "data", "preview", "parts", "--out", str(tmp_path / "p.png"), "--n", "4",
                       "--data-options", "image_size=64", "--data-options", "train_size=8")
    assert code == 0 and Image.open(tmp_path / "p.png").size[0] > 200
    code, _, _ = run(capsys, "data", "preview", "digits", "--out", str(tmp_path / "d.png"), "--n", "9")
    assert code == 0 and (tmp_path / "d.png").is_file()
    code, _, err = run(capsys, "data", "preview", "digits", "--out", str(tmp_path / "d.jpg"))
    assert_one_line_error(code, err, "must be a .png")


def test_features_extract_twice_is_a_cache_hit(capsys, tmp_path):
    args = ["features", "extract", "--data", "digits", "--backbone", "small-cnn", "--out", str(tmp_path), "--quiet"]
    code, out, _ = run(capsys, *args)
    assert code == 0 and out.count("extracted: digits/") == 2 and "(360, 64, 7, 7)" in out
    code, out, _ = run(capsys, *args)
    assert code == 0 and out.count("cache hit: digits/") == 2
    assert len(list(tmp_path.iterdir())) == 2  # one entry per split


def test_features_extract_on_parts_with_a_vit(capsys, tmp_path):
    code, out, _ = run(capsys, "features", "extract", "--data", "parts", "--backbone", "vit_tiny_patch16_224", "--no-pretrained",
                       "--image-size", "64", "--split", "val", "--data-options", "image_size=64", "--data-options", "val_size=3",
                       "--out", str(tmp_path), "--quiet")
    assert code == 0 and "(3, 192, 4, 4)" in out


@pytest.mark.parametrize("args, pattern", [
    (["data", "preview", "imagenet", "--out", "x.png"], "unknown dataset 'imagenet'.*valid names: .*parts"),
    (["features", "extract", "--data", "digits", "--backbone", "lite9", "--out", "c"], "unknown backbone 'lite9'"),
    (["features", "extract", "--data", "digits", "--backbone", "small-cnn", "--out", "c", "--dtype", "int8"],
     "unknown feature dtype 'int8'"),
    (["features", "extract", "--data", "digits", "--backbone", "small-cnn", "--out", "c", "--data-options", "size"],
     "KEY=VALUE"),
    (["features", "extract", "--data", "fashion-mnist", "--root", "{tmp}", "--backbone", "small-cnn", "--out", "c"],
     "apt-get install dataset-fashion-mnist"),
    (["features", "extract", "--data", "digits", "--backbone", "resnet18", "--weights", "{tmp}/none.safetensors",
      "--out", "c"], "weights file not found"),
])
def test_bad_input_gives_one_line_errors(capsys, tmp_path, args, pattern):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, pattern)
