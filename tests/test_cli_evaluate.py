"""`sparsex evaluate` and `sparsex demo --quick` end to end on a tiny part world."""

import base64
import io
import json
import re

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run

import sparsex.evaluate as evaluate_module


def test_evaluate_writes_the_report_and_prints_the_rows(parts_classifier, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "evaluate", "--model", parts_classifier, "--explainer", "saliency,gradcam", "--out", str(out),
                            "--limit", "8", "-q")
    assert code == 0, err
    assert "parts, test split, 8 images" in stdout
    lines = {line.split(":")[0].strip(): line for line in stdout.splitlines() if ": acc " in line}
    assert list(lines) == ["small-cnn.saliency", "small-cnn.gradcam"]
    assert all("BI " in line and "del-AUC " in line and "ins-AUC " in line for line in lines.values())
    assert f"wrote {out}" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 8 and list(metrics["rows"]) == ["small-cnn.saliency", "small-cnn.gradcam"]
    accuracy = metrics["rows"]["small-cnn.saliency"]["accuracy"]
    assert f"acc {accuracy:.3f}" in lines["small-cnn.saliency"]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "small-cnn.gradcam" in page
    assert (out / "radar.png").is_file() and (out / "explanations.png").is_file() and (out / "tables.md").is_file()

    before = (out / "metrics.json").read_bytes()
    code, _, err = run(capsys, "evaluate", "--model", parts_classifier, "--explainer", "saliency", "--out", str(out), "-q")
    assert_one_line_error(code, err, "already exists and is not empty; pass --overwrite")
    assert (out / "metrics.json").read_bytes() == before


def test_unknown_explainer(parts_classifier, tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", "--model", parts_classifier, "--explainer", "saliency,nope", "--out",
                       str(tmp_path / "e"), "-q")
    assert_one_line_error(code, err, "unknown explainer 'nope'; valid names: .*gradcam.*integrated-gradients.*saliency")
    assert not (tmp_path / "e").exists()


def test_explainer_settings_reach_the_explainer(parts_classifier, tmp_path, capsys, monkeypatch):
    created = []
    create_explainer = evaluate_module.create_explainer

    def spy(name, model, **settings):
        created.append((name, settings))
        return create_explainer(name, model, **settings)

    monkeypatch.setattr(evaluate_module, "create_explainer", spy)
    out = tmp_path / "set"
    # the default explainers of a classifier (integrated gradients, Grad-CAM), each with a setting
    code, stdout, err = run(capsys, "evaluate", "--model", parts_classifier, "--out", str(out), "--limit", "3",
                            "--set", "integrated-gradients.n_steps=2", "--set", "gradcam.interpolate_mode=nearest", "-q")
    assert code == 0, err
    assert created == [("integrated-gradients", {"n_steps": 2}), ("gradcam", {"interpolate_mode": "nearest"})]
    config = json.loads((out / "config.json").read_text())
    assert config["explainer_settings"] == {"integrated-gradients": {"n_steps": 2}, "gradcam": {"interpolate_mode": "nearest"}}
    assert "small-cnn.integrated-gradients:" in stdout and "small-cnn.gradcam:" in stdout


@pytest.mark.parametrize("args, pattern", [
    (["--explainer", "saliency", "--set", "saliency.abs=false"], r"unknown saliency setting\(s\) abs; valid: \(none\)"),
    (["--explainer", "gradcam", "--set", "gradcam.interpolate_mode=cubic"], "interpolate_mode must be one of .*got 'cubic'"),
    (["--explainer", "saliency", "--set", "noexplainerdot=1"], "--set takes EXPLAINER.KEY=VALUE, got 'noexplainerdot'"),
    (["--explainer", "saliency", "--set", "gradcam.layer=x"], r"settings given for explainer\(s\) not evaluated: gradcam"),
    (["--set", "saliency.abs=true"], r"settings given for explainer\(s\) not evaluated: saliency \(evaluated: "
                                     "integrated-gradients, gradcam\\)"),
    (["--explainer", "saliency", "--data", "digits"], "trained on 'parts', not 'digits'"),
    (["--explainer", "saliency", "--limit", "-1"], "limit must be a positive integer"),
])
def test_bad_input_gives_one_line_errors(parts_classifier, tmp_path, capsys, args, pattern):
    code, _, err = run(capsys, "evaluate", "--model", parts_classifier, "--out", str(tmp_path / "e"), "--limit", "2", *args, "-q")
    assert_one_line_error(code, err, pattern)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left


def test_missing_model(tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "e"), "-q")
    assert_one_line_error(code, err, "no such folder")


def test_evaluate_a_model_without_part_masks_warns(digits_classifier, tmp_path, capsys):
    code, stdout, err = run(capsys, "evaluate", "--model", str(digits_classifier[0]), "--explainer", "saliency",
                            "--out", str(tmp_path / "digits"), "--limit", "8", "-q")
    assert code == 0, err
    assert "warning: skipping bi, completeness, correctness, contrastivity" in stdout and "no part masks" in stdout
    row = next(line for line in stdout.splitlines() if "small-cnn.saliency:" in line)
    assert "BI –" in row and "del-AUC 0." in row
    assert json.loads((tmp_path / "digits" / "metrics.json").read_text())["skipped"]


def test_demo_quick_and_rerun(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    code, stdout, err = run(capsys, "demo", "--quick", "--out", str(out), "-q")
    assert code == 0, err
    rows = ["small-cnn.integrated-gradients", "small-cnn.gradcam", "side.prototypes", "protosvit.prototypes"]
    for name in rows:
        assert f"{name}: acc " in stdout, name
    assert f"report: {out / 'report.html'}" in stdout
    assert "a smoke test" in stdout and "numbers mean nothing" in stdout
    page = (out / "report.html").read_text()
    assert "quick: a smoke test, its numbers mean nothing" in page
    for name in rows:
        assert name in page, name
    # the page opens on ONE grid of explanations, drawn from every evaluation folder's figure images
    first = page.split('<section id="section-2">')[0]
    assert "<h2>Explanations of the predicted class</h2>" in first and first.count("<img") == 1
    grid = Image.open(io.BytesIO(base64.b64decode(re.search(r'base64,([^"]+)"', first).group(1))))
    assert grid.height > (2 + len(rows)) * 100  # the images, their parts, then a row per model and explainer
    for model in ("classifier", "side", "protosvit"):
        assert f'href="eval-{model}/report.html"' in page
        assert (out / f"eval-{model}" / "explanations.safetensors").is_file()
        assert (out / model / "checkpoint").is_dir()
        metrics = json.loads((out / f"eval-{model}" / "metrics.json").read_text())
        assert metrics["images"] == 8 and metrics["data"] == "parts"
    classifier_eval = json.loads((out / "eval-classifier" / "config.json").read_text())
    assert classifier_eval["explainer_settings"] == {"integrated-gradients": {"n_steps": 4}}

    def stamps():
        """mtimes of the trained stages, cached features and evaluations (the trainers rewrite the final
        checkpoint folder on resume), and the final weights' bytes."""
        files = [p for p in out.rglob("*") if p.is_file()]
        kept = {p.relative_to(out): p.stat().st_mtime_ns for p in files
                if "stages" in p.relative_to(out).parts or p.relative_to(out).parts[0].startswith(("eval-", "features"))}
        weights = {model: (out / model / "checkpoint" / "model.safetensors").read_bytes()
                   for model in ("classifier", "side", "protosvit")}
        return kept, weights

    before = stamps()
    assert {p.parts[0] for p in before[0]} == {"classifier", "side", "protosvit", "features", "eval-classifier",
                                               "eval-side", "eval-protosvit"}

    def no_evaluation(*args, **kwargs):
        raise AssertionError("the rerun evaluated a model again")

    monkeypatch.setattr(evaluate_module, "evaluate", no_evaluation)
    code, stdout2, err = run(capsys, "demo", "--quick", "--out", str(out), "-q")
    assert code == 0, err
    assert stamps() == before  # nothing retrained, re-extracted or re-evaluated
    assert [line for line in stdout2.splitlines() if ": acc " in line] == \
        [line for line in stdout.splitlines() if ": acc " in line]
    assert (out / "report.html").is_file()


def test_evaluate_any_model_spec_on_a_labelled_folder_and_on_unlabelled_images(tmp_path, capsys):
    """timm:NAME with a weight file on an image folder (its 3 classes map by position onto the model's
    3), then the same model on unlabelled images: faithfulness for the predicted class, no accuracy."""
    import shutil

    import timm
    from safetensors.torch import save_file

    from sparsex.partworld import PartWorldConfig, write_parts_tree

    save_file(timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict(), tmp_path / "W.safetensors")
    write_parts_tree(tmp_path / "world", PartWorldConfig(image_size=48, train_size=24, val_size=0, test_size=72),
                     progress=False)
    for name in ("class_00", "class_01", "class_02"):
        shutil.copytree(tmp_path / "world" / "test" / name, tmp_path / "folder" / "test" / name)
    common = ["--model", "timm:resnet18", "--weights", str(tmp_path / "W.safetensors"), "--num-classes", "3",
              "--image-size", "48", "--explainer", "gradcam,saliency", "-q"]
    code, stdout, err = run(capsys, "evaluate", *common, "--data", "imagefolder", "--root", str(tmp_path / "folder"),
                            "--out", str(tmp_path / "labelled"))
    assert code == 0, err
    rows = json.loads((tmp_path / "labelled" / "metrics.json").read_text())["rows"]
    assert set(rows) == {"resnet18.gradcam", "resnet18.saliency"}
    assert {"accuracy", "deletion_auc", "insertion_auc", "sufficiency"} <= set(rows["resnet18.gradcam"])
    assert not (tmp_path / "labelled.partial").exists()  # finished: its partial explanations are gone
    code, stdout, err = run(capsys, "evaluate", *common, "--images", str(tmp_path / "folder"),
                            "--out", str(tmp_path / "unlabelled"))
    assert code == 0, err
    row = json.loads((tmp_path / "unlabelled" / "metrics.json").read_text())["rows"]["resnet18.saliency"]
    assert "accuracy" not in row and 0 <= row["deletion_auc"] <= 1


def test_an_interrupted_evaluation_keeps_its_finished_explanations(parts_classifier, tmp_path, monkeypatch):
    from sparsex.evaluate import EvaluateConfig, evaluate
    from sparsex.explainers.attributions import SaliencyExplainer

    config = EvaluateConfig(model=parts_classifier, explainers=["saliency", "gradcam"], limit=8, figure_images=2)
    calls = []
    real = SaliencyExplainer._attribute

    def counted(self, inputs, targets):
        calls.append(len(inputs))
        return real(self, inputs, targets)

    monkeypatch.setattr(SaliencyExplainer, "_attribute", counted)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # killed while the second explainer runs

    monkeypatch.setattr("sparsex.explainers.attributions.GradCAMExplainer._attribute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(config, tmp_path / "e", progress=False)
    assert sum(calls) > 0 and any((tmp_path / "e.partial" / "saliency").glob("*.safetensors"))
    done = sum(calls)
    monkeypatch.undo()
    monkeypatch.setattr(SaliencyExplainer, "_attribute", counted)
    evaluate(config, tmp_path / "e", progress=False)
    assert sum(calls) == done  # every saliency map came back from the partial store
    assert (tmp_path / "e" / "metrics.json").is_file() and not (tmp_path / "e.partial").exists()
