"""End-to-end on tiny data: `sparsex train dictionary` and `sparsex analyze dictionary` on a 32 px part
world with the small CNN, a dataset without part masks, and bad input."""

import json
import shutil

import pytest
import torch
from test_cli import assert_one_line_error, run

from sparsex.dictionaries.evaluate import cache_samples, check_cache_backbone
from sparsex.errors import DataError, InputError
from sparsex.features import FeatureCache

TINY_PARTS = ["--data", "parts", "--data-options", "image_size=32", "--data-options", "train_size=48",
              "--data-options", "test_size=24", "--backbone", "small-cnn", "--no-pretrained", "--atoms", "16", "--k", "2",
              "--epochs", "3", "--min-cover", "0.1", "--quiet"]
TINY_DIGITS = ["--data", "digits", "--backbone", "small-cnn", "--no-pretrained", "--atoms", "8", "--k", "2", "--epochs", "2",
               "--quiet"]


@pytest.fixture(scope="module")
def dictionary_run(tmp_path_factory):
    from sparsex.cli import main

    out = tmp_path_factory.mktemp("cli") / "topk"
    try:
        main(["train", "dictionary", "--method", "topk", "--out", str(out), *TINY_PARTS])
    except SystemExit as e:
        assert e.code in (None, 0)
    return out


def test_train_dictionary_grades_on_the_part_world(dictionary_run):
    final = json.loads((dictionary_run / "metrics.json").read_text())["final"]
    for key in ("fvu", "l0", "dead", "recovery_auroc", "recovered_fraction", "recovered_distinct", "purity", "unmatched", "control", "train_s",
                "supervised_recovery_auroc", "supervised_control", "variant_control", "supervised_variant_control"):
        assert key in final, key
    assert final["l0"] <= 2 and 0 <= final["dead"] <= 1 and 0.5 <= final["recovery_auroc"] <= 1
    assert len(final["concepts"]["best_atom"]) == 31 and len(final["concepts"]["auroc_matrix"]) == 16
    config = json.loads((dictionary_run / "config.json").read_text())
    assert config["method"] == "topk" and config["atoms"] == 16 and config["k"] == 2
    assert (dictionary_run / "checkpoint" / "model.safetensors").is_file()


def test_rerun_resumes_with_the_same_figures(capsys, dictionary_run):
    before = (dictionary_run / "metrics.json").read_text()
    code, out, _ = run(capsys, "train", "dictionary", "--method", "topk", "--out", str(dictionary_run), *TINY_PARTS)
    assert code == 0 and "recovery_auroc" in out
    assert (dictionary_run / "metrics.json").read_text() == before
    code, _, err = run(capsys, "train", "dictionary", "--method", "mp", "--out", str(dictionary_run), *TINY_PARTS)
    assert_one_line_error(code, err, "other settings .*method")


def test_remeasure_grades_a_finished_run_again(dictionary_run, tmp_path):
    """A run graded by an older version (a figure missing, as before ``recovered_distinct``) is measured again,
    its fitted dictionary and training figures kept."""
    from sparsex.train.dictionary import DictionaryTrainConfig, train_dictionary

    out = tmp_path / "topk"
    shutil.copytree(dictionary_run, out)
    before = json.loads((out / "metrics.json").read_text())["final"]
    for record_file in (out / "metrics.json", out / "stages" / "1-fit" / "metrics.json"):
        record = json.loads(record_file.read_text())
        for stage in (record.get("final"), *record.get("stages", []), record):
            if stage is not None and "recovered_distinct" in stage:
                del stage["recovered_distinct"]
                stage["train_s"] = 123.0
        record_file.write_text(json.dumps(record))
    config = DictionaryTrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert "recovered_distinct" not in train_dictionary(config, out, progress=False)  # resumed as it was
    final = train_dictionary(config, out, progress=False, remeasure=True)
    assert final["recovered_distinct"] == before["recovered_distinct"] and final["train_s"] == 123.0
    assert final["recovery_auroc"] == before["recovery_auroc"] and final["fvu"] == pytest.approx(before["fvu"], rel=1e-6)
    assert json.loads((out / "metrics.json").read_text())["final"] == final
    assert json.loads((out / "stages" / "1-fit" / "metrics.json").read_text()) == final


def test_analyze_dictionary_writes_the_report(capsys, dictionary_run, tmp_path):
    out = tmp_path / "report"
    code, stdout, _ = run(capsys, "analyze", "dictionary", str(dictionary_run), "--out", str(out), "--atoms", "3", "--quiet")
    assert code == 0 and "report.md" in stdout
    report = (out / "report.md").read_text()
    assert "## Concept recovery" in report and "| body |" in report and "## Controls" in report
    assert (out / "galleries.png").stat().st_size > 0 and (out / "atom_concept.png").stat().st_size > 0
    assert len(json.loads((out / "analysis.json").read_text())["gallery"]) == 3
    code, _, err = run(capsys, "analyze", "dictionary", str(dictionary_run), "--out", str(out), "--quiet")
    assert_one_line_error(code, err, "exists")


def test_dataset_without_part_masks(capsys, tmp_path):
    out = tmp_path / "digits"
    code, _, err = run(capsys, "train", "dictionary", "--out", str(out), *TINY_DIGITS, "--grade")
    assert_one_line_error(code, err, "no part masks.*cannot be graded")
    assert not out.exists()
    code, stdout, _ = run(capsys, "train", "dictionary", "--out", str(out), *TINY_DIGITS)
    assert code == 0
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert {"fvu", "l0", "dead"} <= final.keys() and "recovery_auroc" not in final
    code, stdout, _ = run(capsys, "analyze", "dictionary", str(out), "--quiet")
    assert code == 0 and "No grading" in (out / "analysis" / "report.md").read_text()


@pytest.mark.parametrize("args,pattern", [
    (["--atoms", "16", "--k", "17"], "k must be"),
    (["--atoms", "0"], "atoms must be"),
    (["--method", "kmeans", "--k", "3"], "k must be 1"),
    (["--method", "pca", "--atoms", "128"], "at most as many atoms"),
    (["--method", "sparse"], "unknown dictionary method"),
])
def test_bad_settings_leave_nothing(capsys, tmp_path, args, pattern):
    out = tmp_path / "bad"
    code, _, err = run(capsys, "train", "dictionary", "--out", str(out), *TINY_DIGITS, *args)
    assert_one_line_error(code, err, pattern)
    assert not out.exists()


def test_cache_of_another_backbone_and_nan_activations(dictionary_run):
    cache = FeatureCache.load(next((dictionary_run / "features").glob("parts-test-*")))
    config = json.loads((dictionary_run / "checkpoint" / "config.json").read_text())["config"]
    check_cache_backbone(cache, config["backbone_info"])  # its own backbone: accepted
    with pytest.raises(DataError, match="features of backbone 'small-cnn'.*'lite0'"):
        check_cache_backbone(cache, {**config["backbone_info"], "name": "lite0"})
    cache.features = cache.features.clone()
    cache.features[0, 0, 0, 0] = torch.nan
    with pytest.raises(InputError, match="1 NaN or infinite"):
        cache_samples(cache, pooled=False)


def test_a_world_with_another_class_table_is_not_graded():
    """The concepts and controls are defined on the default class table: parts-fine is refused for --grade, else warned."""
    from sparsex.data import create_dataset
    from sparsex.train.dictionary import DictionaryTrainConfig, graded

    options = {"preset": "parts-fine", "image_size": 32, "train_size": 4, "test_size": 2}
    world = create_dataset("parts", split="train", **options)
    config = DictionaryTrainConfig.from_dict({"data": "parts", "data_options": options, "backbone": "small-cnn",
                                              "pretrained": False, "atoms": 8, "k": 2, "grade": True})
    with pytest.raises(DataError, match="default 24-class part world; this one has 120 classes.*drop --grade"):
        graded(config, world)
    config.grade = None
    with pytest.warns(UserWarning, match="not graded"):
        assert graded(config, world) is False
    default = create_dataset("parts", split="train", image_size=32, train_size=4, test_size=2)
    assert graded(config, default) is True
