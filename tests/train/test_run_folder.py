import json

import pytest
from torch import nn

from sparsex.errors import OutputExistsError
from sparsex.train import RunFolder


def test_stages_are_recorded_and_resumable(tmp_path):
    run = RunFolder(tmp_path / "r", {"lr": 1}, ["a", "b"])
    assert run.last_finished() == -1
    run.finish_stage(0, nn.Linear(2, 2), "toy", {"model": {}}, {"accuracy": 0.5, "hist": [1, 2]})
    again = RunFolder(tmp_path / "r", {"lr": 1}, ["a", "b"])
    assert again.last_finished() == 0 and again.load_stage(0, "toy").config["stage"] == "a"
    again.finish_stage(1, nn.Linear(2, 2), "toy", {"model": {}}, {"accuracy": 0.75, "size": 3})
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["a", "b"] and metrics["final"]["accuracy"] == 0.75
    table = (tmp_path / "r" / "stages.md").read_text().splitlines()
    assert table[0] == "| stage | accuracy | size |" and table[2] == "| a | 0.5 |  |" and table[3] == "| b | 0.75 | 3 |"


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    RunFolder(tmp_path / "r", {"lr": 1, "k": 2}, ["a"]).finish_stage(0, nn.Linear(1, 1), "toy", {}, {})
    with pytest.raises(OutputExistsError, match=r"other settings \(lr\); pass --overwrite"):
        RunFolder(tmp_path / "r", {"lr": 2, "k": 2}, ["a"])
    fresh = RunFolder(tmp_path / "r", {"lr": 2, "k": 2}, ["a"], overwrite=True)
    assert fresh.last_finished() == -1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a sparsex run"):
        RunFolder(tmp_path / "other", {}, ["a"])


def test_restart_repairs_what_a_kill_left(tmp_path):
    """A kill between a stage's checkpoint and metrics.json, mid-write of config.json (a temporary of a dead
    process is all the folder holds) or mid-deletion of an old stage folder: the next RunFolder repairs it."""
    out = tmp_path / "r"
    run = RunFolder(out, {"lr": 1}, ["a", "b"])
    run.finish_stage(0, nn.Linear(2, 2), "toy", {}, {"accuracy": 0.5})
    record = json.loads((out / "metrics.json").read_text())
    run.finish_stage(1, nn.Linear(2, 2), "toy", {}, {"accuracy": 0.75})
    (out / "metrics.json").write_text(json.dumps(record))  # as if killed before metrics.json was updated
    again = RunFolder(out, {"lr": 1}, ["a", "b"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["a", "b"] and metrics["final"] == {"stage": "b", "accuracy": 0.75}
    assert "| b | 0.75 |" in (out / "stages.md").read_text()
    (again.stage_dir(0) / "model.safetensors").unlink()  # a deletion cut short
    RunFolder(out, {"lr": 1}, ["a", "b"])
    assert not again.stage_dir(0).exists() and again.stage_dir(1).is_dir()

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".config.json.tmp-00000000-999999999-x").write_text("{")  # our naming, no such process
    from sparsex.io import _HOST

    (fresh / f".config.json.tmp-{_HOST}-999999999-x").write_text("{")
    with pytest.raises(OutputExistsError, match="not a sparsex run"):  # another host's temporary is kept
        RunFolder(fresh, {}, ["a"])
    (fresh / ".config.json.tmp-00000000-999999999-x").unlink()
    assert RunFolder(fresh, {}, ["a"]).last_finished() == -1
    assert sorted(p.name for p in fresh.iterdir()) == ["config.json"]


def test_a_run_started_before_a_setting_was_added_resumes(tmp_path):
    """open_run reads a stored config back through the config class: a setting it lacks takes its
    default, so the run resumes; a stored setting that differs is still refused."""
    from dataclasses import dataclass

    from sparsex.train.base import TrainConfig
    from sparsex.train.loop import open_run

    @dataclass
    class Toy(TrainConfig):
        lr: float = 1.0
        added: int = 3  # a setting this version added

    out = tmp_path / "r"
    RunFolder(out, {k: v for k, v in Toy().to_dict().items() if k != "added"}, ["a"]).finish_stage(
        0, nn.Linear(1, 1), "toy", {}, {})
    run = open_run(out, Toy(), ["a"])
    assert run.last_finished() == 0 and json.loads((out / "config.json").read_text())["added"] == 3
    with pytest.raises(OutputExistsError, match=r"other settings \(added\)"):
        open_run(out, Toy(added=4), ["a"])
    # a changed setting of a run that lacks a newer one: only the changed one is named
    RunFolder(tmp_path / "old", {k: v for k, v in Toy().to_dict().items() if k != "added"}, ["a"])
    with pytest.raises(OutputExistsError, match=r"other settings \(lr\); pass"):
        open_run(tmp_path / "old", Toy(lr=2.0), ["a"])
