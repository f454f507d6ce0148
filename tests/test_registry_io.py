import json
import multiprocessing
import os
import signal

import pytest

from sparsex.errors import OutputExistsError, UnknownNameError
from sparsex.io import _temp_prefix, atomic_dir, atomic_file, check_output_dir, remove_stale_temps, sha256_json, write_json
from sparsex.registry import Registry


def test_registry_creates_and_lists_and_suggests():
    reg = Registry("widget")

    @reg.register("alpha", description="first")
    def make_alpha(x=1):
        return ("alpha", x)

    assert reg.names() == ["alpha"]
    assert reg.create("alpha", x=3) == ("alpha", 3)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\); valid names: alpha"):
        reg.create("alpah")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(make_alpha)


def test_atomic_dir_leaves_nothing_on_error_and_refuses_existing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert not out.exists() and list(tmp_path.iterdir()) == []

    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output_dir(out)
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folders left


def test_write_json_and_hash_are_stable(tmp_path):
    write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"b": 1, "a": [1, 2]}
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


def test_top_level_factories():
    import sparsex

    assert "parts" in sparsex.list_datasets() and "lite0" in sparsex.list_backbones()
    assert {"side", "infodisent"} <= set(sparsex.list_models())
    head = sparsex.create_model("side", in_channels=4, num_classes=2, expanded_channels=2)
    assert head.config.num_prototypes == 4


def test_read_json_names_missing_and_corrupt_files(tmp_path):
    from sparsex.errors import CheckpointError, DataError
    from sparsex.io import read_json

    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "ok.json", "thing") == {"a": 1}
    with pytest.raises(DataError, match=r"^thing .*absent.json is missing$"):
        read_json(tmp_path / "absent.json", "thing")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"^cannot read thing .*bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json", "thing", CheckpointError)


def test_from_settings_refuses_unknown_names_in_one_line():
    from dataclasses import dataclass

    from sparsex.checks import from_settings
    from sparsex.errors import DataError

    @dataclass
    class Toy:
        size: int = 1
        seed: int = 0

    assert from_settings(Toy, {"seed": 3}, "toy") == Toy(size=1, seed=3)
    with pytest.raises(DataError, match=r"^unknown toy setting\(s\) colour, sise; valid: size, seed$"):
        from_settings(Toy, {"sise": 2, "colour": 1}, "toy", DataError)


def test_atomic_outputs_get_the_usual_permissions_not_tempfile_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "a.txt") as f:
            f.write("x")
        with atomic_dir(tmp_path / "run") as tmp:
            (tmp / "b.txt").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755


def _killed_writer(folder: str, label: str) -> None:
    os.environ["SPARSEX_TEST_KILL_AT"] = label
    write_json(folder + "/a.json", {"v": 1})
    with atomic_dir(folder + "/ck") as tmp:
        (tmp / "x.txt").write_text("whole")


def test_a_killed_writer_leaves_only_a_temporary_that_the_next_write_removes(tmp_path):
    """SPARSEX_TEST_KILL_AT kills between the temporary copy and the rename: the target is never half
    there; the next atomic write of the same target (or remove_stale_temps) removes the dead one's temporary."""
    for label in ("a.json", "ck"):
        child = multiprocessing.get_context("fork").Process(target=_killed_writer, args=(str(tmp_path), label))
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL
        assert not (tmp_path / label).exists() and any(p.name.startswith(f".{label}.tmp-") for p in tmp_path.iterdir())
        if label == "a.json":
            write_json(tmp_path / "a.json", {"v": 2})
            assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    dead = next(p for p in tmp_path.iterdir() if p.name.startswith(".ck.tmp-"))
    live = tmp_path / (_temp_prefix("b.txt") + "x")  # this process's: alive
    live.write_text("a live writer's")
    assert remove_stale_temps(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", live.name])
