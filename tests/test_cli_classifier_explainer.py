"""`sparsex train classifier`, `sparsex train minimal-mask` and `sparsex explain mask` end to end on digits."""

import json

import torch
from PIL import Image
from test_cli import assert_one_line_error, run


def test_train_classifier_explainer_and_explain_mask(tmp_path, capsys):
    classifier, explainer = tmp_path / "clf", tmp_path / "mm"
    code, out, err = run(capsys, "train", "classifier", "--data", "digits", "--backbone", "small-cnn", "--set", "image_size=8",
                         "--epochs", "1", "--out", str(classifier), "--quiet")
    assert code == 0, err
    assert "test_accuracy" in out and (classifier / "checkpoint" / "model.safetensors").is_file()
    code, out, err = run(capsys, "train", "minimal-mask", "--model", str(classifier), "--out", str(explainer), "--epochs", "1",
                         "--set", "width=4", "--set", "weights.area=3", "--set", "train_limit=64", "--set", "test_limit=16",
                         "--quiet")
    assert code == 0, err
    assert "calibration" in out and "threshold 0.5, area" in out and "{'threshold'" not in out  # one line per row
    config = json.loads((explainer / "config.json").read_text())
    assert config["explainer"]["weights"]["area"] == 3 and config["train_limit"] == 64
    # the last stage calibrates the threshold on training images; the final checkpoint carries it
    metrics = json.loads((explainer / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["epoch-1", "calibrate"]
    table = metrics["final"]["calibration"]
    assert [row["threshold"] for row in table] == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    chosen = metrics["final"]["threshold"]
    best = max(row["sufficiency"] for row in table)
    assert min(row["area"] for row in table if row["sufficiency"] >= best - 0.01) == next(
        row["area"] for row in table if row["threshold"] == chosen)
    final = json.loads((explainer / "checkpoint" / "config.json").read_text())["config"]
    assert final["explainer"]["threshold"] == chosen
    assert final["explainer"]["fallback_areas"] == metrics["final"]["fallback_areas"]  # pruned by the same stage
    assert "rescued" in out and "area 0.3, images" in out
    Image.fromarray((torch.rand(8, 8) * 255).byte().numpy()).save(tmp_path / "digit.png")
    code, out, err = run(capsys, "explain", "mask", "--explainer", str(explainer), "--image", str(tmp_path / "digit.png"),
                         "--out", str(tmp_path / "explained"))
    assert code == 0, err
    assert "mask area" in out and (tmp_path / "explained" / "mask.png").is_file()
    code, _, err = run(capsys, "explain", "mask", "--explainer", str(explainer), "--image", str(tmp_path / "missing.png"),
                       "--out", str(tmp_path / "explained2"))
    assert_one_line_error(code, err, "image file not found")
    code, _, err = run(capsys, "train", "minimal-mask", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, "no such folder")


def test_train_classifier_bad_mode(tmp_path, capsys):
    code, _, err = run(capsys, "train", "classifier", "--data", "digits", "--backbone", "small-cnn", "--mode", "nope",
                       "--out", str(tmp_path / "c"))
    assert_one_line_error(code, err, "unknown classifier mode 'nope'")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_explain_mask_warnings_by_hand():
    from sparsex.cli import mask_warnings

    def record(area, on_x, on_e):
        return {"mask_area": area, "mask_empty": area == 0, "label_kept": on_x == on_e, "prediction_on_image": [{"name": on_x, "probability": 0.9}],
                "prediction_on_explanation": [{"name": on_e, "probability": 0.6}]}

    assert mask_warnings(record(0.08, "shoe", "shoe")) == []
    empty = mask_warnings(record(0.0, "shoe", "bag"))
    assert len(empty) == 1 and empty[0].startswith("the mask is empty: the blurred image alone is classified bag")
    lost = mask_warnings(record(0.08, "shoe", "bag"))
    assert len(lost) == 1 and lost[0].startswith("the explanation loses the label (shoe -> bag)")
    both = mask_warnings(record(0.97, "shoe", "bag"))
    assert len(both) == 2 and both[1].startswith("the mask keeps 97% of the image, so it is not a minimal explanation")
