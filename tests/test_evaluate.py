"""``sparsex.evaluate``: one evaluation of a trained model and its explainers, on a tiny part world
(a small CNN classifier and a tiny SIDE run) and on the 8x8 digits (no part masks)."""

import json
import re
import shutil
import warnings

import pytest
import torch
from PIL import Image

import sparsex.evaluate as evaluate_module
from sparsex.errors import DataError, InputError, OutputExistsError, SparsexError, UnknownNameError
from sparsex.evaluate import (
    EXPLANATIONS_FILE,
    PART_PROTOCOLS,
    EvaluateConfig,
    ExplanationMemo,
    FigureExplanations,
    evaluate,
    resolve_data,
    write_combined_report,
)
from sparsex.viz.report import RADAR_AXES

#: the TINY SIDE settings of tests/train/test_side_training.py
TINY_SIDE = dict(data="parts", data_options={"image_size": 48, "train_size": 48, "test_size": 24}, backbone="small-cnn",
                 expanded_channels=6, pretrain_epochs=3, finetune_epochs=2, calibrate_epochs=2,
                 prune_k=2, batch_size=16, gallery_k=2)
OUTPUT_FILES = {"config.json", "metrics.json", "radar.png", "explanations.png", "explanations.safetensors", "tables.md",
                "report.html"}


@pytest.fixture(scope="module")
def side_run(tmp_path_factory):
    from sparsex.train.side import SIDETrainConfig, train_side

    out = tmp_path_factory.mktemp("side") / "run"
    train_side(SIDETrainConfig(**TINY_SIDE, cache_dir=str(out.parent / "features")), out, progress=False)
    return str(out)


@pytest.fixture(scope="module")
def evaluated(parts_classifier, tmp_path_factory):
    """The classifier with saliency and Grad-CAM on 12 test images: ``(output folder, result)``."""
    out = tmp_path_factory.mktemp("evaluated") / "eval"
    result = evaluate(EvaluateConfig(model=parts_classifier, explainers=["saliency", "gradcam"], limit=12), out,
                      progress=False)
    return out, result


def _radar_scores_in_range(rows):
    for name, row in rows.items():
        for axis in RADAR_AXES:
            value = row.get(axis)
            assert value is None or 0.0 <= value <= 1.0, (name, axis, value)


def _entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_output_folder_of_an_evaluation(evaluated):
    out, result = evaluated
    assert set(_entries(out)) == OUTPUT_FILES
    assert _entries(out.parent) == ["eval"]  # no temporary folder left beside it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert list(metrics["rows"]) == ["small-cnn.saliency", "small-cnn.gradcam"]
    assert metrics["model_name"] == "small-cnn" and metrics["data"] == "parts" and metrics["split"] == "test"
    assert metrics["images"] == 12 and metrics["explainers"] == ["saliency", "gradcam"] and metrics["skipped"] == {}
    _radar_scores_in_range(metrics["rows"])
    for row in metrics["rows"].values():
        for key in ("accuracy", "bi", "correctness", "contrastivity", "deletion_auc", "insertion_auc"):
            assert key in row, key
        assert 0.0 <= row["deletion_auc"] <= 1.0 and 0.0 <= row["insertion_auc"] <= 1.0
        assert row["images"] == 12 and row["explain_seconds"] >= 0
        # the model's own scores are the same on every row
        assert row["accuracy"] == metrics["model_scores"]["accuracy"] and row["bi"] == metrics["model_scores"]["bi"]
        assert "mask_area" not in row  # neither explainer gives binary masks
    # the two explainers' maps differ, so do some of their scores
    saliency, gradcam = metrics["rows"].values()
    assert (saliency["correctness"], saliency["deletion_auc"]) != (gradcam["correctness"], gradcam["deletion_auc"])
    protocol = metrics["protocol"]
    assert protocol["forward_passes"] > 0 and protocol["wall_s"] > 0
    assert protocol["explain_s"] == pytest.approx(saliency["explain_seconds"] + gradcam["explain_seconds"])

    config = json.loads((out / "config.json").read_text())
    assert config["explainers"] == ["saliency", "gradcam"] and config["limit"] == 12 and config["explainer_settings"] == {}
    assert EvaluateConfig.from_dict(config) == EvaluateConfig(model=result["model"], explainers=["saliency", "gradcam"],
                                                              limit=12)
    table = (out / "tables.md").read_text().splitlines()
    assert len(table) == 2 + 2 and table[0].startswith("| row | accuracy | abstention | bi |")
    assert table[2].startswith("| small-cnn.saliency |") and table[3].startswith("| small-cnn.gradcam |")
    for png in ("radar.png", "explanations.png"):
        with Image.open(out / png) as image:
            assert image.format == "PNG" and min(image.size) > 100
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2  # radar and explanations, embedded
    assert "small-cnn.saliency" in page and "small-cnn.gradcam" in page
    assert 'src="http' not in page and "radar.png" not in page  # self-contained
    # the explanations first, then the scores table, the radar and the cost
    assert re.findall(r"<h2>(.*?)</h2>", page)[:4] == ["Explanations of the predicted class", "Scores",
                                                       "Summary scores (radar)", "Cost (seconds, forward passes)"]


def test_the_figure_images_are_kept_for_the_reports(parts_classifier, evaluated):
    from sparsex.data import create_dataset
    from sparsex.models.classifier import load_image_classifier

    out, result = evaluated
    explained = FigureExplanations.load(out / EXPLANATIONS_FILE)
    assert explained.indices.tolist() == list(range(6))  # figure_images of the first test images
    dataset = create_dataset("parts", split="test", image_size=48, train_size=96, test_size=24)
    images = torch.stack([dataset[i]["image"] for i in range(6)])
    assert explained.images.dtype == torch.uint8 and torch.allclose(explained.images.float() / 255, images, atol=0.5 / 255)
    assert explained.labels.tolist() == [dataset[i]["label"] for i in range(6)]
    model, _ = load_image_classifier(parts_classifier)
    with torch.no_grad():
        assert torch.equal(explained.predicted, model(images).argmax(dim=1))
    assert list(explained.maps) == ["saliency", "gradcam"]
    assert all(m.shape == (6, 1, 48, 48) and m.dtype == torch.float32 for m in explained.maps.values())
    assert explained.part_masks.shape == (6, 6, 48, 48) and explained.part_masks.dtype == torch.bool
    assert explained.classes == list(dataset.classes) and explained.part_names == list(dataset.part_names)
    assert (out / EXPLANATIONS_FILE).read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle


def test_figure_images_file_errors(tmp_path):
    bad = tmp_path / EXPLANATIONS_FILE
    bad.write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="cannot read evaluation figure images") as caught:
        FigureExplanations.load(bad)
    assert "\n" not in str(caught.value)
    from safetensors.torch import save_file

    save_file({"indices": torch.arange(2)}, str(bad))
    with pytest.raises(DataError, match="lack 'explainers'; evaluate the model again"):
        FigureExplanations.load(bad)


def test_forward_passes_are_those_of_one_shared_intervention_cache(parts_classifier, evaluated):
    from sparsex.data import create_dataset
    from sparsex.explainers.base import create_explainer
    from sparsex.models.classifier import load_image_classifier
    from sparsex.partworld import InterventionCache, evaluate_parts, evaluate_parts_model

    _, both = evaluated
    one = evaluate(EvaluateConfig(model=parts_classifier, explainers=["saliency"], limit=12), progress=False)

    model, checkpoint = load_image_classifier(parts_classifier)
    data, root, options = resolve_data(EvaluateConfig(model=parts_classifier), checkpoint.config["data"])
    dataset = create_dataset(data, split="test", root=root, **options)
    cache, indices = InterventionCache(model, dataset), list(range(12))
    evaluate_parts_model(model, dataset, indices, cache=cache)
    passes = [cache.forward_passes]
    for name in ("saliency", "gradcam"):
        explainer = create_explainer(name, model)
        evaluate_parts(model, dataset, lambda x, t, e=explainer: e.attribute(x, target=t), indices, cache=cache)
        passes.append(cache.forward_passes)
    assert one["protocol"]["forward_passes"] == passes[1]
    assert both["protocol"]["forward_passes"] == passes[2]
    first, second = passes[1] - passes[0], passes[2] - passes[1]
    assert first > 0 and second < first  # the second explainer reuses the first one's interventions
    # and the scores do not depend on whether another explainer ran first
    assert one["rows"]["small-cnn.saliency"] == {**both["rows"]["small-cnn.saliency"],
                                                  "explain_seconds": one["rows"]["small-cnn.saliency"]["explain_seconds"]}


def test_faithfulness_reuses_the_part_protocols_explanations(parts_classifier, monkeypatch):
    seen = []
    faithfulness = evaluate_module._faithfulness

    def spy(model, images, explain, config):
        before = len(explain.maps)
        scores = faithfulness(model, images, explain, config)
        seen.append((before, len(explain.maps)))
        return scores

    monkeypatch.setattr(evaluate_module, "_faithfulness", spy)
    evaluate(EvaluateConfig(model=parts_classifier, explainers=["saliency"], limit=6), progress=False)
    # the part protocols explain the labels and the predictions: the curves of the predicted class add nothing
    assert len(seen) == 1 and seen[0][0] >= 6 and seen[0][1] == seen[0][0]


def test_explanation_memo_computes_each_image_and_class_once():
    def reference(images, targets):
        return images.sum(dim=1, keepdim=True) * (targets.view(-1, 1, 1, 1) + 1)

    calls = []

    def attribute(images, targets):
        calls.append(len(images))
        return reference(images, targets)

    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    memo = ExplanationMemo(attribute, internal_batch_size=2)
    labels = torch.tensor([0, 1, 2, 0, 1])
    first = memo(images, labels)
    assert calls == [2, 2, 1] and first.shape == (5, 1, 4, 4)  # internal_batch_size at a time
    assert torch.allclose(first, reference(images, labels))
    again = memo(images, labels)
    assert calls == [2, 2, 1] and torch.equal(again, first)  # nothing recomputed
    # a subset, reordered, of the same (image, class) pairs: cached too
    assert torch.equal(memo(images[[3, 0]], labels[[3, 0]]), first[[3, 0]]) and calls == [2, 2, 1]

    other = torch.tensor([0, 2, 2, 1, 1])  # images 0, 2 and 4 keep their class, 1 and 3 change it
    maps = memo(images, other)
    assert calls == [2, 2, 1, 2] and torch.allclose(maps, reference(images, other))
    assert not torch.allclose(maps[[1, 3]], first[[1, 3]])  # another class, another map
    assert len(memo.maps) == 7 and memo.seconds > 0
    # equal pixels are the same image, wherever they come from
    assert torch.equal(memo(images[1:2].clone(), torch.tensor([1])), first[1:2]) and calls == [2, 2, 1, 2]


def test_side_run_is_evaluated_with_its_prototypes(side_run, tmp_path):
    result = evaluate(EvaluateConfig(model=side_run, limit=12, figure_images=2), tmp_path / "side", progress=False)
    assert result["model_name"] == "side" and result["explainers"] == ["prototypes"]
    assert list(result["rows"]) == ["side.prototypes"]
    row = result["rows"]["side.prototypes"]
    assert 0.0 <= row["consistency"] <= 1.0 and 0.0 <= row["stability"] <= 1.0
    assert 0 < row["local_size"] <= 2  # at most prune_k prototypes contribute to a class
    assert float(row["global_size"]).is_integer() and 0 < row["global_size"] <= 12
    assert 0 < row["global_size_used"] <= row["global_size"] and 0 <= row["local_size_true"] <= 2
    _radar_scores_in_range(result["rows"])
    assert "side.prototypes" in (tmp_path / "side" / "report.html").read_text()
    assert "local_size" in (tmp_path / "side" / "tables.md").read_text()


def test_default_explainers_take_settings(parts_classifier, monkeypatch):
    created = []
    create_explainer = evaluate_module.create_explainer

    def spy(name, model, **settings):
        created.append((name, settings))
        return create_explainer(name, model, **settings)

    monkeypatch.setattr(evaluate_module, "create_explainer", spy)
    result = evaluate(EvaluateConfig(model=parts_classifier, explainer_settings={"integrated-gradients": {"n_steps": 2}},
                                     limit=3), progress=False)
    assert list(result["rows"]) == ["small-cnn.integrated-gradients", "small-cnn.gradcam"]
    assert created == [("integrated-gradients", {"n_steps": 2}), ("gradcam", {})]
    # settings for an explainer that the model's defaults do not include
    with pytest.raises(SparsexError, match=r"settings given for explainer\(s\) not evaluated: saliency"):
        evaluate(EvaluateConfig(model=parts_classifier, explainer_settings={"saliency": {}}, limit=3), progress=False)


@pytest.mark.parametrize("settings, error, pattern", [
    ({"explainers": ["saliency", "nope"]}, UnknownNameError,
     "unknown explainer 'nope'; valid names: gradcam, integrated-gradients, .*saliency"),
    ({"explainers": "saliency,gradcm"}, UnknownNameError, "unknown explainer 'gradcm' \\(did you mean 'gradcam'\\?\\)"),
    ({"explainers": ["saliency"], "explainer_settings": {"gradcam": {"layer": "x"}}}, SparsexError,
     r"settings given for explainer\(s\) not evaluated: gradcam"),
    ({"explainer_settings": {"nope": {}}}, UnknownNameError, "unknown explainer 'nope'"),
    ({"model": ""}, SparsexError, "evaluate needs a model"),
    ({"limit": 0}, SparsexError, "limit"),
    ({"auc_steps": -1}, SparsexError, "auc_steps"),
    ({"figure_images": -1}, SparsexError, "figure_images must be a non-negative integer"),
])
def test_bad_settings(settings, error, pattern):
    with pytest.raises(error, match=pattern) as caught:
        EvaluateConfig(**{"model": "run", **settings})
    assert "\n" not in str(caught.value)


def test_config_from_dict():
    config = EvaluateConfig.from_dict({"model": "run", "explainers": "saliency, gradcam", "limit": None})
    assert config.explainers == ["saliency", "gradcam"] and config.limit is None
    with pytest.raises(SparsexError, match="explainer_setings"):
        EvaluateConfig.from_dict({"model": "run", "explainer_setings": {}})


def test_resolve_data():
    trained_on = {"name": "parts", "root": "/data", "options": {"image_size": 48}}
    assert resolve_data(EvaluateConfig(model="m"), trained_on) == ("parts", "/data", {"image_size": 48})
    assert resolve_data(EvaluateConfig(model="m", data="parts", root="/other", data_options={"test_size": 4}),
                        trained_on) == ("parts", "/other", {"test_size": 4})
    with pytest.raises(InputError, match="model m was trained on 'parts', not 'digits'"):
        resolve_data(EvaluateConfig(model="m", data="digits"), trained_on)
    with pytest.raises(InputError, match="does not record its training data; pass --data"):
        resolve_data(EvaluateConfig(model="m"), {})
    assert resolve_data(EvaluateConfig(model="m", data="digits"), {}) == ("digits", None, {})


def test_another_dataset_is_refused(parts_classifier, tmp_path):
    with pytest.raises(InputError, match="trained on 'parts', not 'digits'") as caught:
        evaluate(EvaluateConfig(model=parts_classifier, explainers=["saliency"], data="digits"), tmp_path / "out",
                 progress=False)
    assert "\n" not in str(caught.value) and _entries(tmp_path) == []


def test_existing_output_folder(parts_classifier, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    config = EvaluateConfig(model=parts_classifier, explainers=["saliency"], limit=2, figure_images=0)
    with pytest.raises(OutputExistsError, match="already exists and is not empty; pass --overwrite"):
        evaluate(config, out, progress=False)
    assert _entries(out) == ["old.txt"]
    evaluate(config, out, overwrite=True, progress=False)
    assert set(_entries(out)) == OUTPUT_FILES - {"explanations.png", EXPLANATIONS_FILE}  # figure_images=0: no figure
    assert _entries(tmp_path) == ["out"]


@pytest.mark.parametrize("settings, error, pattern", [
    ({"integrated-gradients": {"n_steps": 0}}, SparsexError, "n_steps"),
    ({"integrated-gradients": {"bogus": 1}}, SparsexError, "unknown integrated-gradients setting\\(s\\) bogus; valid: n_steps"),
])
def test_failure_mid_way_leaves_nothing_behind(parts_classifier, tmp_path, settings, error, pattern):
    config = EvaluateConfig(model=parts_classifier, explainers=["saliency", "integrated-gradients"],
                            explainer_settings=settings, limit=3)
    with pytest.raises(error, match=pattern):
        evaluate(config, tmp_path / "out", progress=False)
    assert _entries(tmp_path) == []  # neither the folder nor a hidden temporary one
    # over an existing folder with overwrite: the old one stays as it was
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("keep")
    with pytest.raises(error, match=pattern):
        evaluate(config, tmp_path / "out", overwrite=True, progress=False)
    assert _entries(tmp_path) == ["out"] and _entries(tmp_path / "out") == ["old.txt"]


def test_dataset_without_part_masks(digits_classifier, tmp_path):
    from sparsex.data import create_dataset
    from sparsex.data.sampler import dataset_tensors
    from sparsex.models.classifier import load_image_classifier

    run_folder, _ = digits_classifier
    with pytest.warns(UserWarning) as caught:
        result = evaluate(EvaluateConfig(model=str(run_folder), explainers=["saliency"], limit=16), tmp_path / "digits",
                          progress=False)
    messages = [str(w.message) for w in caught if "skipping" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("skipping " + ", ".join(PART_PROTOCOLS))
    assert "'digits' has no part masks" in messages[0]
    assert result["data"] == "digits" and result["images"] == 16
    row = result["rows"]["small-cnn.saliency"]
    assert set(row) == {"accuracy", "abstention", "deletion_auc", "insertion_auc", "sufficiency", "explain_seconds"}
    assert 0.0 <= row["deletion_auc"] <= 1.0 and 0.0 <= row["insertion_auc"] <= 1.0
    model, _ = load_image_classifier(run_folder)
    images, labels = dataset_tensors(create_dataset("digits", split="test"), False, 16)
    with torch.no_grad():
        accuracy = float((model(images).argmax(dim=1) == labels).float().mean())
    assert row["accuracy"] == pytest.approx(accuracy) and accuracy > 0.3  # trained: well above chance
    assert row["abstention"] == 0.0  # a trained CNN's logits never tie exactly
    assert "forward_passes" not in result["protocol"]
    metrics = json.loads((tmp_path / "digits" / "metrics.json").read_text())
    assert sorted(metrics["skipped"]) == sorted(PART_PROTOCOLS)
    assert all("no part masks" in reason for reason in metrics["skipped"].values())
    page = (tmp_path / "digits" / "report.html").read_text()
    assert "Skipped protocols" in page and "no part masks" in page and "data:image/png;base64," in page
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="trained on 'digits', not 'parts'"):
            evaluate(EvaluateConfig(model=str(run_folder), explainers=["saliency"], data="parts"), progress=False)


def test_combined_report_of_two_evaluations(evaluated, digits_classifier, tmp_path):
    parts_folder, _ = evaluated
    shutil.copytree(parts_folder, tmp_path / "all" / "eval-parts")
    digits_folder = tmp_path / "all" / "eval-digits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(EvaluateConfig(model=str(digits_classifier[0]), explainers=["saliency"], limit=8), digits_folder,
                 progress=False)
    digits_result = json.loads((digits_folder / "metrics.json").read_text())  # another name for the second small CNN
    digits_result = {**digits_result, "model_name": "digits-cnn",
                     "rows": {"digits-cnn.saliency": digits_result["rows"]["small-cnn.saliency"]}}
    (digits_folder / "metrics.json").write_text(json.dumps(digits_result))
    path = write_combined_report(tmp_path / "all" / "report.html", [tmp_path / "all" / "eval-parts", digits_folder],
                                 title="two models")
    assert path == tmp_path / "all" / "report.html"
    page = path.read_text()
    assert "<title>two models</title>" in page
    for name in ("small-cnn.saliency", "small-cnn.gradcam", "digits-cnn.saliency"):
        assert name in page, name
    assert 'href="eval-parts/report.html"' in page and 'href="eval-digits/report.html"' in page
    explanations = page.split('<section id="section-2">')[0]
    assert "<h2>Explanations of the predicted class</h2>" in explanations
    assert explanations.count("<img") == 2  # one grid per dataset: the part world's and the digits'
    assert page.count("data:image/png;base64,") == 3  # and the radar of every row
    assert "no part masks" in page  # the skipped protocols of the digits model
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]

    (digits_folder / EXPLANATIONS_FILE).unlink()  # an evaluation without figure images: no rows in the grid
    page = write_combined_report(path, [digits_folder, tmp_path / "all" / "eval-parts"], title="two models").read_text()
    assert page.split('<section id="section-2">')[0].count("<img") == 1 and "digits-cnn.saliency" in page
    with pytest.raises(DataError, match="evaluation metrics.json .*nowhere.*metrics.json is missing"):
        write_combined_report(path, [tmp_path / "nowhere"], title="none")
    with pytest.raises(InputError, match="needs at least one evaluation folder"):
        write_combined_report(path, [], title="none")


def test_auc_limit_measures_the_curves_on_the_first_images(digits_classifier):
    from sparsex import create_explainer
    from sparsex.data import create_dataset
    from sparsex.data.sampler import dataset_tensors
    from sparsex.metrics.faithfulness import deletion_auc
    from sparsex.models.classifier import load_image_classifier

    run_folder, _ = digits_classifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = evaluate(EvaluateConfig(model=str(run_folder), explainers=["saliency"], limit=8, auc_limit=3),
                       progress=False)["rows"]["small-cnn.saliency"]
    model, _ = load_image_classifier(run_folder)
    images = dataset_tensors(create_dataset("digits", split="test"), False, 3)[0]
    maps = create_explainer("saliency", model).attribute(images)
    assert row["deletion_auc"] == pytest.approx(float(deletion_auc(model, images, maps).mean()), abs=1e-6)
    with pytest.raises(SparsexError, match="auc_limit"):
        EvaluateConfig(model="m", auc_limit=0)


def test_evaluate_measures_sizes_as_the_trainer_does(tmp_path):
    """One function, one threshold: evaluate's sizes of a ProtoS-ViT run (importance threshold 0.1,
    above the metrics' eps 1e-3) on its whole test split equal the trainer's on the same images."""
    from sparsex.train.protosvit import ProtoSViTTrainConfig, train_protosvit

    tiny = dict(data="parts", data_options={"image_size": 48, "train_size": 48, "test_size": 24}, backbone="small-cnn",
                num_prototypes=12, embed_dim=8, epochs=3, hoyer_warmup_epochs=1, batch_size=16, gallery_k=2)
    run = tmp_path / "protosvit"
    config = ProtoSViTTrainConfig(**tiny, cache_dir=str(tmp_path / "features"))
    assert config.importance_threshold > 1e-3
    final = train_protosvit(config, run, progress=False)
    result = evaluate(EvaluateConfig(model=str(run), limit=24, figure_images=2), tmp_path / "eval", progress=False)
    row = result["rows"]["protosvit.prototypes"]
    for key in ("local_size", "local_size_true", "local_size_all", "global_size", "global_size_used"):
        assert row[key] == pytest.approx(final[key], abs=1e-6), key
    settings = result["prototype_settings"]
    assert settings["sizes"]["contribution_eps"] == config.importance_threshold
    assert settings["stability"]["noise_space"] == "normalised" and settings["stability"]["average"] == "prototypes"
    assert settings["stability"]["sigma_pixels"] == pytest.approx(0.2 * 0.5)  # small-cnn normalises with std 0.5
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["prototype_settings"]["stability"]["noise_space"] == "normalised"
